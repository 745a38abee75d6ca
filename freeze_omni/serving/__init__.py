"""Model as a server: replicas that keep no user state, a scheduler over per-session work, a
session store with limits, and the HTTP/WebSocket front with its web client."""

from freeze_omni.serving.replica import Replica, Result, load_replicas
from freeze_omni.serving.runner import Connection, ModelServer, ServerLimits
from freeze_omni.serving.scheduler import Kind, QueueFull, Scheduler, WorkItem
from freeze_omni.serving.store import ServerFull, SessionStore

__all__ = ["Replica", "Result", "load_replicas", "Connection", "ModelServer", "ServerLimits", "Kind", "QueueFull",
           "Scheduler", "WorkItem", "ServerFull", "SessionStore"]
