"""What the turn engine tells its caller, as typed values (a server forwards them to the client).

Every event carries `t_ms`: the input-stream time (ms of user audio accepted so far) at which it
was decided, so latencies can be measured on the user's own timeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

import numpy as np

from freeze_omni.llm.state_head import DialogueState


@dataclass(frozen=True)
class SpeechStarted:
    t_ms: float
    speech_ms: float  # where the VAD places the onset (earlier than t_ms by its decision delay)


@dataclass(frozen=True)
class SpeechEnded:
    t_ms: float
    speech_ms: float


@dataclass(frozen=True)
class StateDecision:
    t_ms: float
    state: DialogueState
    probabilities: tuple[float, float, float]
    barge_in: bool  # decided on speech heard while an answer was active


@dataclass(frozen=True)
class AnswerStarted:
    t_ms: float
    speech_end_ms: float  # where the request's speech ended, as far as the VAD could tell then


@dataclass(frozen=True)
class AnswerText:
    t_ms: float
    text: str  # the next phrase, handed to the speaker at the same moment


@dataclass(frozen=True, eq=False)
class AnswerAudio:
    t_ms: float
    pcm: np.ndarray = field(repr=False)  # float32 mono
    sample_rate: int


@dataclass(frozen=True)
class AnswerFinished:
    t_ms: float
    text: str  # everything the answer said


@dataclass(frozen=True)
class Interrupted:
    t_ms: float
    kept_text: str  # what the conversation keeps of the cut answer: stop playback now


@dataclass(frozen=True)
class AnswerPaused:
    t_ms: float
    unplayed_samples: int  # produced audio the user has not heard: drop it from the playback queue


@dataclass(frozen=True)
class AnswerResumed:
    t_ms: float  # the unplayed audio follows again as AnswerAudio


@dataclass(frozen=True)
class TurnIgnored:
    t_ms: float
    reason: Literal["state", "timeout"]


Event = Union[SpeechStarted, SpeechEnded, StateDecision, AnswerStarted, AnswerText, AnswerAudio,
              AnswerFinished, AnswerPaused, AnswerResumed, Interrupted, TurnIgnored]
