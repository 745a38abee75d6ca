"""Every connected user's `Session`, with the limits that keep one server process healthy.

Pure bookkeeping with an injected clock: the server asks which sessions to end (idle too long,
over the memory cap) and tells their users why. Memory is what the caches hold (conversation KV,
a barge-in copy, encoder caches are small and not counted), measured, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from freeze_omni.dialogue.session import Session
from freeze_omni.errors import FreezeOmniError


class ServerFull(FreezeOmniError):
    """No room for another user."""


@dataclass
class _Entry:
    session: Session
    last_input: float  # clock time of the user's last audio


def session_bytes(session: Session) -> int:
    """Bytes of the KV caches the session holds (the conversation and a barge-in copy)."""
    caches = [session.kv]
    if session.listening is not None and session.listening.kv is not session.kv:
        caches.append(session.listening.kv)
    return sum(kv.keys.nbytes + kv.values.nbytes for kv in caches)


class SessionStore:
    def __init__(self, max_users: int, idle_timeout_s: float = 60.0, memory_cap_bytes: int = 2 << 30) -> None:
        if max_users < 1:
            raise ValueError(f"max_users must be >= 1, got {max_users}")
        self.max_users = max_users
        self.idle_timeout_s = idle_timeout_s
        self.memory_cap_bytes = memory_cap_bytes
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._entries

    def reserve(self) -> None:
        """Raise `ServerFull` when a new user would not fit (checked before building a session)."""
        if len(self._entries) >= self.max_users:
            raise ServerFull(f"the server holds its maximum of {self.max_users} users")

    def add(self, session: Session, now: float) -> None:
        self.reserve()
        if session.session_id in self._entries:
            raise ValueError(f"session {session.session_id!r} exists already")
        self._entries[session.session_id] = _Entry(session, now)

    def get(self, session_id: str) -> Session:
        return self._entries[session_id].session

    def touch(self, session_id: str, now: float) -> None:
        """The user sent audio: the session is not idle."""
        self._entries[session_id].last_input = now

    def remove(self, session_id: str) -> Session | None:
        entry = self._entries.pop(session_id, None)
        return entry.session if entry else None

    def idle(self, now: float) -> list[str]:
        """Sessions whose user sent no audio for `idle_timeout_s`."""
        return [sid for sid, e in self._entries.items() if now - e.last_input >= self.idle_timeout_s]

    def memory_bytes(self) -> int:
        return sum(session_bytes(e.session) for e in self._entries.values())

    def over_memory(self) -> list[str]:
        """Sessions to end, least recently active first, until the rest fit under the cap."""
        total = self.memory_bytes()
        victims = []
        for sid, entry in sorted(self._entries.items(), key=lambda kv: kv[1].last_input):
            if total <= self.memory_cap_bytes:
                break
            victims.append(sid)
            total -= session_bytes(entry.session)
        return victims
