"""Everything one user has: every stream cache, the conversation KV and its text history.

The models hold no per-user state; a `Session` holds all of it, so any replica can process any
chunk of any user, and a conversation can be saved to a file and continued later. The turn
engine (`turn.py`) is the only code that changes a session.
"""

from __future__ import annotations

import os
import pickle
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.framing import FrameStreamState
from freeze_omni.audio.vad import VadState
from freeze_omni.dialogue.playout import Playout
from freeze_omni.dialogue.speaker import Phrase
from freeze_omni.errors import FreezeOmniError
from freeze_omni.llm import FrozenLLM, KVCache
from freeze_omni.speech_input import SpeechInputCache

FILE_VERSION = 1


class Phase(str, Enum):
    IDLE = "idle"
    LISTENING = "listening"  # a user turn is being heard (no answer active)
    ANSWERING = "answering"  # the answer is being generated or synthesised
    SPEAKING = "speaking"  # all of it is produced; its audio is still playing


@dataclass
class HistoryEntry:
    role: Literal["user", "assistant"]
    text: str | None  # the assistant's words as heard; None for user speech (heard, not transcribed)
    start_ms: float
    end_ms: float
    interrupted: bool = False  # an assistant answer cut short by a barge-in


@dataclass(frozen=True)
class AnswerCut:
    """How a barge-in turn, once accepted, keeps the answer it talks over."""

    kept_tokens: int
    kept_text: str


@dataclass
class ListeningTurn:
    """A user turn being heard, chunk by chunk, until the state head decides."""

    kv: KVCache  # the session's own KV, or for a barge-in a copy with the answer cut (see `cut`)
    turn_start: int  # kv length before this turn's user_start ids
    features: FrameStreamState
    speech: SpeechInputCache
    started_ms: float  # VAD onset of the turn's speech
    ended_at_ms: float | None = None  # stream time of the last VAD end (None while speech goes on)
    speech_end_ms: float | None = None  # where that VAD end placed the end of speech
    cut: AnswerCut | None = None  # set for a barge-in
    # mean encoder frames of the last chunks heard, for an acoustic state head (`acoustic_context`)
    acoustic: torch.Tensor | None = field(default=None, repr=False)
    # [1, t, hidden] embeddings that go into the LLM ahead of the first speech (the user turn's
    # start and the prompt), in the same pass: one pass fewer for the chunk that opens a turn
    lead: torch.Tensor | None = field(default=None, repr=False)
    draft: AnswerDraft | None = None  # an answer begun while the user is quiet (turn.py rule 9)


@dataclass
class Answer:
    """An answer being generated, synthesised and played."""

    turn_start: int  # kv length before the user turn it answers
    start: int  # kv length of its first token (after user_end_assistant_start)
    started_ms: float
    logits: torch.Tensor | None  # [1, vocab] for the next token; None once generation has ended
    tokens: list[int] = field(default_factory=list)  # generated, all in the KV (stop token excluded)
    phrase_start: int = 0  # first token not yet in a phrase
    hidden: list[torch.Tensor] = field(default_factory=list)  # [hidden] of each token since phrase_start
    handed_text: str = ""  # text of the tokens before phrase_start
    phrases: int = 0  # phrases made so far
    ready: deque[Phrase] = field(default_factory=deque)  # phrases waiting for the speaker
    text: str = ""  # text of the phrases the speaker has started: what was shown
    speech: Iterator[np.ndarray] | None = None  # packets of the phrase being synthesised
    playout: Playout = field(default_factory=Playout)

    @property
    def produced(self) -> bool:
        """Every token generated and every packet synthesised (only playback may remain)."""
        return self.logits is None and self.speech is None and not self.ready and self.phrase_start == len(self.tokens)


@dataclass
class AnswerDraft:
    """An answer begun on a copy of the turn while the state head still listens, so that its first
    phrase and that phrase's first packet may be ready when the head decides to answer (turn.py rule 9)."""

    length: int  # the turn's KV length when the draft began
    voiced_until: int  # the VAD's `voiced_until` then: any later voiced window makes the draft stale
    kv: KVCache | None = None  # a copy of those positions, made with its first unit of work
    generator: torch.Generator | None = None  # a copy of the session's, so a dropped draft leaves it as it was
    answer: Answer | None = None  # None until the assistant-start ids are prefilled
    phrase: Phrase | None = None  # its first phrase, once handed to the speaker (not yet shown)
    packets: list[np.ndarray] = field(default_factory=list, repr=False)  # that phrase's audio made so far (unplayed)

    @property
    def working(self) -> bool:
        """Whether work remains: up to the first phrase's first packet (or its end, if it has no audio)."""
        answer = self.answer
        if answer is None:
            return True
        if self.phrase is None:
            return bool(answer.ready) or answer.logits is not None
        return answer.speech is not None and not self.packets


@dataclass
class Session:
    session_id: str
    kv: KVCache  # the conversation so far: system prompt and every accepted turn
    vad: VadState
    generator: torch.Generator  # this user's sampling randomness
    history: list[HistoryEntry] = field(default_factory=list)
    listening: ListeningTurn | None = None
    answer: Answer | None = None
    preroll: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # the last ~1 s of input
    unconsumed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # < one chunk
    samples_in: int = 0  # input samples processed in whole chunks: the session clock

    @property
    def t_ms(self) -> float:
        return 1000.0 * self.samples_in / SAMPLE_RATE

    @property
    def phase(self) -> Phase:
        if self.answer is not None:
            return Phase.SPEAKING if self.answer.produced else Phase.ANSWERING
        return Phase.LISTENING if self.listening is not None else Phase.IDLE

    def committed(self) -> tuple[int, list[HistoryEntry]]:
        """KV length and history of the finished exchanges: a turn still being heard or answered
        is not part of them."""
        if self.answer is not None:
            return self.answer.turn_start, self.history[:-1]  # the last entry is the request it answers
        if self.listening is not None and self.listening.kv is self.kv:
            return self.listening.turn_start, list(self.history)
        return self.kv.length, list(self.history)

    def save(self, path: str | Path) -> None:
        """Write the conversation (KV of the finished exchanges, history, sampling state) to `path`."""
        length, history = self.committed()
        kv = KVCache(self.kv.keys[:, :, :, :length], self.kv.values[:, :, :, :length], length)
        state = {"version": FILE_VERSION, "session_id": self.session_id, "kv": kv.state_dict(),
                 "history": [asdict(entry) for entry in history], "generator": self.generator.get_state()}
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        torch.save(state, partial)
        os.replace(partial, path)

    @classmethod
    def load(cls, path: str | Path, llm: FrozenLLM) -> "Session":
        """A session that continues the saved conversation with `llm` (which must be the same model)."""
        try:
            state = torch.load(Path(path), map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
            raise FreezeOmniError(f"{path}: not a readable session file ({error})") from error
        if not isinstance(state, dict) or state.get("version") != FILE_VERSION:
            raise FreezeOmniError(f"{path}: not a freeze-omni session file (version {FILE_VERSION})")
        kv = KVCache.from_state_dict(state["kv"], device=llm.device)
        cfg = llm.config
        expected = (cfg.num_layers, 1, cfg.num_kv_heads, kv.length, cfg.head_dim)
        if tuple(kv.keys.shape) != expected:
            raise FreezeOmniError(f"{path}: saved with a different LLM (KV shape {tuple(kv.keys.shape)}, "
                                  f"this LLM needs {expected})")
        kv = KVCache(kv.keys.to(llm.cache_dtype), kv.values.to(llm.cache_dtype), kv.length)
        generator = torch.Generator()
        generator.set_state(state["generator"])
        return cls(session_id=state["session_id"], kv=kv, vad=VadState(), generator=generator,
                   history=[HistoryEntry(**entry) for entry in state["history"]])
