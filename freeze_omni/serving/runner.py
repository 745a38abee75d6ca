"""The asyncio side of the model server: replicas in worker threads, fed by the scheduler.

One dispatcher task hands a batch to every idle replica (`Scheduler.next_batch`), runs it in a
thread (torch releases the GIL, so replicas run in parallel) and routes each result to its
user's bounded outbox. Nothing polls: the dispatcher sleeps on an event that new input and
finished work set. Connections, not this module, do the socket IO (`app.py`).

Failure handling: an item that raised was rewound by its replica; a chunk is retried once, then
the user gets an `internal` error event and the session goes on from its last finished
exchange. Other users never notice. A user whose outbox is full (a client that does not read)
is disconnected rather than buffered without bound.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from freeze_omni.dialogue.events import AnswerStarted
from freeze_omni.dialogue.turn import CHUNK_SAMPLES
from freeze_omni.serving.metrics import Metrics
from freeze_omni.serving.protocol import error_message, event_message
from freeze_omni.serving.replica import Replica, Result
from freeze_omni.serving.scheduler import Kind, QueueFull, Scheduler, WorkItem
from freeze_omni.serving.store import SessionStore

OUTBOX_MESSAGES = 512  # events + audio packets waiting for a slow client


@dataclass
class Connection:
    """One user's link to the server: their outbox and why the server ended it, if it did."""

    session_id: str
    outbox: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(OUTBOX_MESSAGES))
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_reason: str | None = None
    samples_fed: int = 0  # input samples queued so far: where the next 160 ms chunk boundary is

    def end(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self.closed.set()

    def send(self, message: dict | bytes) -> bool:
        """Queue a message; False (and the connection is ended) when the client is not reading."""
        if self.closed.is_set():
            return False
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            self.end("slow_reader")
            return False
        return True


@dataclass(frozen=True)
class ServerLimits:
    max_users: int = 8
    max_batch: int = 4
    max_pending_chunks: int = 32  # ~5 s of input a user may be behind before being told to leave
    idle_timeout_s: float = 60.0
    memory_cap_bytes: int = 2 << 30
    housekeeping_s: float = 1.0


class ModelServer:
    def __init__(self, replicas: list[Replica], limits: ServerLimits = ServerLimits(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not replicas:
            raise ValueError("a server needs at least one replica")
        self.replicas = replicas
        self.limits = limits
        self.clock = clock
        self.scheduler = Scheduler(limits.max_batch, limits.max_pending_chunks)
        self.store = SessionStore(limits.max_users, limits.idle_timeout_s, limits.memory_cap_bytes)
        self.metrics = Metrics()
        self.connections: dict[str, Connection] = {}
        self._idle = list(replicas)
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(len(replicas) + 1, thread_name_prefix="replica")
        self._tasks: list[asyncio.Task] = []
        self._running: set[asyncio.Task] = set()
        self._ids = itertools.count()

    # ---- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._dispatch()), asyncio.create_task(self._housekeeping())]

    async def stop(self) -> None:
        for connection in list(self.connections.values()):
            connection.end("shutting_down")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._running, return_exceptions=True)
        self._pool.shutdown(wait=True)

    @property
    def busy_replicas(self) -> int:
        return len(self.replicas) - len(self._idle)

    @property
    def output_sample_rate(self) -> int:
        return self.replicas[0].engine.speaker.sample_rate

    # ---- users --------------------------------------------------------------------------------
    async def connect(self, system_prompt: str | None = None, seed: int | None = None) -> Connection:
        """A new session (its system prompt prefilled off the event loop); raises `ServerFull`.
        Without a `seed`, each session samples with its own random one."""
        self.store.reserve()
        session_id = f"{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        seed = secrets.randbits(31) if seed is None else seed
        loop = asyncio.get_running_loop()
        session = await loop.run_in_executor(self._pool, self.replicas[0].new_session, session_id, system_prompt, seed)
        self.store.add(session, self.clock())  # raises ServerFull if others took the room meanwhile
        self.scheduler.open(session_id)
        connection = Connection(session_id)
        self.connections[session_id] = connection
        return connection

    def feed(self, connection: Connection, pcm: np.ndarray) -> None:
        """Queue `pcm` cut at the 160 ms chunk boundaries of the user's stream, so each item holds at
        most one chunk of model work; a piece short of a boundary is queued too, since the engine
        checks it for talk-over at once (turn rule 8). Raises `QueueFull`."""
        if connection.closed.is_set():
            return
        now = self.clock()
        self.store.touch(connection.session_id, now)
        behind = self.scheduler.pending_chunks(connection.session_id)
        if behind + pcm.size / CHUNK_SAMPLES > self.limits.max_pending_chunks:
            raise QueueFull(f"the server is {behind:.1f} chunks behind this user")
        start = 0
        while start < pcm.size:
            end = min(pcm.size, start + CHUNK_SAMPLES - (connection.samples_fed + start) % CHUNK_SAMPLES)
            self.scheduler.add_chunk(connection.session_id, pcm[start:end], now)
            start = end
        connection.samples_fed += pcm.size
        self._wake.set()

    def disconnect(self, connection: Connection, reason: str = "client") -> None:
        """Free everything of the user: queued work, session, caches (an item in flight finishes
        on its own and its results are dropped)."""
        if self.connections.pop(connection.session_id, None) is None:
            return
        connection.end(reason)
        self.scheduler.close(connection.session_id)
        self.store.remove(connection.session_id)
        self.metrics.closed[connection.close_reason] += 1

    # ---- work ---------------------------------------------------------------------------------
    async def _dispatch(self) -> None:
        while True:
            while self._idle and self.scheduler.has_ready:
                # share the ready work among the idle replicas rather than give it all to one
                share = -(-self.scheduler.ready_sessions // len(self._idle))
                replica = self._idle.pop()
                batch = self.scheduler.next_batch(share)
                task = asyncio.create_task(self._run(replica, batch))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            await self._wake.wait()
            self._wake.clear()

    async def _run(self, replica: Replica, batch: list[WorkItem]) -> None:
        # a user may have left between the batch being taken and this task starting
        pairs = [(item, self.store.get(item.session_id)) for item in batch if item.session_id in self.store]
        self.metrics.batches[len(pairs)] += 1
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._pool, replica.run, pairs) if pairs else []
        except Exception as error:  # the replica itself broke, not one item
            results = [Result(item, error=error, finished=self.clock()) for item in batch]
        finally:
            self._idle.append(replica)
            self._wake.set()
        for result in results:
            self._deliver(result)

    def _deliver(self, result: Result) -> None:
        item = result.item
        self.metrics.items[item.kind.value] += 1
        connection = self.connections.get(item.session_id)
        if result.error is not None:
            self.metrics.item_errors[item.kind.value] += 1
            if not self.scheduler.failed(item, None) and connection is not None:
                what = "your last audio" if item.kind is Kind.ENCODE else "the answer"
                connection.send(error_message("internal", f"the server failed on {what} ({type(result.error).__name__}); "
                                              "the conversation goes on from the last finished exchange"))
            return
        self.scheduler.done(item, result.answer, result.due)
        if connection is None:
            return
        if item.kind is Kind.ENCODE:
            self.metrics.chunk_latency_ms.observe(1000.0 * (result.finished - item.enqueued))
        for event in result.events:
            if isinstance(event, AnswerStarted):
                self.metrics.answers += 1
            if not connection.send(event_message(event)):
                self.disconnect(connection, "slow_reader")
                return

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.limits.housekeeping_s)
            self.expire()

    def expire(self) -> None:
        """End idle sessions and, over the memory cap, the least recently active ones."""
        for reason, session_ids in (("idle_timeout", self.store.idle(self.clock())),
                                    ("memory", self.store.over_memory())):
            for session_id in session_ids:
                connection = self.connections.get(session_id)
                if connection is not None:
                    connection.send(error_message(reason, "session ended: " + (
                        "no audio for too long" if reason == "idle_timeout" else "the server is out of memory"),
                        fatal=True))
                    self.disconnect(connection, reason)
