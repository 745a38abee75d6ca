"""Undo a work item that raised, so a replica failure never leaves a session half-changed.

A session's conversation KV is append-only below its committed length (finished exchanges):
the turn engine only writes past it, and a barge-in works on a copy. So a cheap checkpoint
(stream position, VAD and sampling state, the KV object and its committed length) taken before
each item is enough to go back to a consistent state: the conversation of the finished
exchanges, at the same point of the input stream. The turn being heard or answered when the
item failed is dropped (its caches may be half-written); speech that goes on opens a new turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from freeze_omni.audio.vad import SpeechDetector, VadState
from freeze_omni.dialogue.session import HistoryEntry, Session
from freeze_omni.llm import KVCache


@dataclass(frozen=True)
class Checkpoint:
    kv: KVCache
    committed: int
    history: list[HistoryEntry]
    vad: VadState
    preroll: np.ndarray = field(repr=False)
    unconsumed: np.ndarray = field(repr=False)
    samples_in: int = 0
    generator: torch.Tensor = field(default=None, repr=False)

    @classmethod
    def take(cls, session: Session) -> "Checkpoint":
        committed, history = session.committed()
        return cls(session.kv, committed, history, session.vad, session.preroll, session.unconsumed,
                   session.samples_in, session.generator.get_state())


def rewind(session: Session, checkpoint: Checkpoint, detector: SpeechDetector) -> None:
    """Back to `checkpoint` with the unfinished turn (and any answer) dropped."""
    session.kv = checkpoint.kv
    session.kv.crop(checkpoint.committed)
    session.history = list(checkpoint.history)
    session.listening = None
    session.answer = None
    session.vad = detector.close_segment(checkpoint.vad)
    session.preroll = checkpoint.preroll
    session.unconsumed = checkpoint.unconsumed
    session.samples_in = checkpoint.samples_in
    session.generator.set_state(checkpoint.generator)
