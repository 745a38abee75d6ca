"""Which work runs next: per-session queues, round-robin over users, batches for idle replicas.

Pure bookkeeping, no threads and no IO: the server (`runner.py`) asks `next_batch()` whenever a
replica is idle and reports back with `done()` / `failed()`. Three rules make it correct:

1. A session has at most one item in flight, so its chunks are handled strictly in the order they
   arrived and no two replicas ever touch the same session at once.
2. Fairness: sessions with ready work wait in one round-robin line; a served session goes to the
   back. Input chunks of any session go before answer work: listening must keep real time, while
   an answer has audio queued ahead of playback to ride out a short wait. Answer work goes
   earliest due first: an answer is due when the audio queued for its user runs out, or, before
   it has any, when it started. So a user waiting for the first words of an answer goes before
   one whose answer is a second ahead of playback; equal dues keep line order. Within a session,
   pending input comes first too, but after a chunk, waiting answer work gets one unit before
   the next chunk, so an answer always moves.
3. A batch holds the next items of up to `max_batch` sessions, taken in the order of rule 2
   (input chunks in line order, then answer work by due) among those whose next item is of the
   same group as the first one's. Input
   chunks and answer tokens mix (a replica runs their LLM work in shared forward passes, and a
   chunk and a token cost about one pass over the weights together), while a speech packet,
   which uses no LLM and would only run after the others of its batch, goes alone: no chunk
   waits for another user's speech.

A failed chunk is retried once (the runner has rewound the session first); a failed answer
unit is not retried, since the rewind drops the answer it belonged to.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from freeze_omni.dialogue.turn import CHUNK_SAMPLES
from freeze_omni.errors import FreezeOmniError


class Kind(str, Enum):
    ENCODE = "encode"  # input up to the next 160 ms chunk boundary: VAD, and for a whole chunk the rest
    TOKEN = "token"  # generate the next answer token
    PACKET = "packet"  # synthesise the next PCM packet of the current phrase

    @property
    def uses_llm(self) -> bool:
        return self is not Kind.PACKET


@dataclass(frozen=True)
class WorkItem:
    session_id: str
    kind: Kind
    pcm: np.ndarray | None = field(default=None, repr=False)  # ENCODE: float32 samples, at most one chunk
    seq: int = 0  # ENCODE: the item's number in its session (0, 1, ...)
    enqueued: float = 0.0  # clock time the chunk arrived (for per-chunk latency)
    attempt: int = 0


class QueueFull(FreezeOmniError):
    """A session's input is further behind than the server allows."""


@dataclass
class _SessionWork:
    chunks: deque[WorkItem] = field(default_factory=deque)
    answer: Kind | None = None  # the session's next unit of answer work, if any
    due: float = math.inf  # clock time the answer's queued audio runs out (rule 2)
    busy: bool = False  # an item of this session is in flight
    after_chunk: bool = False  # the last item run was a chunk (answer work goes next if waiting)
    next_seq: int = 0

    def next_kind(self) -> Kind | None:
        if self.busy:
            return None
        if self.answer is not None and (self.after_chunk or not self.chunks):
            return self.answer
        return Kind.ENCODE if self.chunks else None


class Scheduler:
    def __init__(self, max_batch: int = 1, max_pending_chunks: int = 32) -> None:
        if max_batch < 1 or max_pending_chunks < 1:
            raise ValueError("max_batch and max_pending_chunks must be >= 1")
        self.max_batch = max_batch
        self.max_pending_chunks = max_pending_chunks
        self._work: dict[str, _SessionWork] = {}
        self._line: deque[str] = deque()  # sessions with ready work, oldest first

    # ---- sessions ---------------------------------------------------------------------------
    def open(self, session_id: str) -> None:
        if session_id in self._work:
            raise ValueError(f"session {session_id!r} is already open")
        self._work[session_id] = _SessionWork()

    def close(self, session_id: str) -> None:
        """Forget the session and its queued work (an item in flight finishes and is discarded)."""
        self._work.pop(session_id, None)
        if session_id in self._line:
            self._line.remove(session_id)

    def pending_chunks(self, session_id: str) -> float:
        """How much input of the session waits, in 160 ms chunks (items may be shorter)."""
        return sum(item.pcm.size for item in self._work[session_id].chunks) / CHUNK_SAMPLES

    # ---- input ------------------------------------------------------------------------------
    def add_chunk(self, session_id: str, pcm: np.ndarray, now: float = 0.0) -> WorkItem:
        work = self._work[session_id]
        if self.pending_chunks(session_id) + pcm.size / CHUNK_SAMPLES > self.max_pending_chunks:
            raise QueueFull(f"session {session_id}: {self.pending_chunks(session_id):.1f} chunks are waiting already")
        item = WorkItem(session_id, Kind.ENCODE, pcm, work.next_seq, now)
        work.next_seq += 1
        work.chunks.append(item)
        self._ready(session_id)
        return item

    # ---- replicas ---------------------------------------------------------------------------
    def next_batch(self, limit: int | None = None) -> list[WorkItem]:
        """The next items of up to `max_batch` (and `limit`) sessions of one group (rule 3): input
        chunks first, from the sessions that have waited longest, then answer work, earliest due
        first; [] when nothing is ready. The sessions become busy."""
        if not self._line:
            return []
        size = self.max_batch if limit is None else max(1, min(limit, self.max_batch))
        kinds = {sid: self._work[sid].next_kind() for sid in self._line}
        inputs = [sid for sid in self._line if kinds[sid] is Kind.ENCODE]
        answers = sorted((sid for sid in self._line if kinds[sid] is not Kind.ENCODE),
                         key=lambda sid: self._work[sid].due)
        group = Kind.ENCODE.uses_llm if inputs else kinds[answers[0]].uses_llm
        size = size if group else 1
        chosen = (inputs + [sid for sid in answers if kinds[sid].uses_llm == group])[:size]
        batch = []
        for sid in chosen:
            self._line.remove(sid)
            work, kind = self._work[sid], kinds[sid]
            work.busy = True
            if kind is Kind.ENCODE:
                batch.append(work.chunks.popleft())
                work.after_chunk = True
            else:
                batch.append(WorkItem(sid, kind))
                work.after_chunk = False
        return batch

    def done(self, item: WorkItem, answer: Kind | None, due: float = math.inf) -> None:
        """`item` finished; `answer` is the session's next unit of answer work (None: nothing to do),
        `due` the clock time its user's queued answer audio runs out (rule 2)."""
        work = self._work.get(item.session_id)
        if work is None:  # closed while the item ran
            return
        work.busy = False
        work.answer, work.due = answer, due
        self._ready(item.session_id)

    def failed(self, item: WorkItem, answer: Kind | None) -> bool:
        """`item` raised and its session was rewound; True when it is queued again (first failure of
        a chunk), False when it is dropped (the user must be told)."""
        work = self._work.get(item.session_id)
        if work is None:
            return False
        retry = item.kind is Kind.ENCODE and item.attempt == 0
        if retry:
            work.chunks.appendleft(WorkItem(item.session_id, item.kind, item.pcm, item.seq, item.enqueued, 1))
        self.done(item, answer)
        return retry

    @property
    def has_ready(self) -> bool:
        return bool(self._line)

    @property
    def ready_sessions(self) -> int:
        return len(self._line)

    def _ready(self, session_id: str) -> None:
        work = self._work[session_id]
        if work.next_kind() is not None and session_id not in self._line:
            self._line.append(session_id)
