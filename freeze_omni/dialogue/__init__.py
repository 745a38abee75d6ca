"""Duplex spoken dialogue: per-user sessions and the turn engine (listen, answer, speak, barge-in)."""

from freeze_omni.dialogue.events import (
    AnswerAudio,
    AnswerFinished,
    AnswerPaused,
    AnswerResumed,
    AnswerStarted,
    AnswerText,
    Event,
    Interrupted,
    SpeechEnded,
    SpeechStarted,
    StateDecision,
    TurnIgnored,
)
from freeze_omni.dialogue.session import HistoryEntry, Phase, Session
from freeze_omni.dialogue.speaker import Phrase, Speaker, TextOnlySpeaker
from freeze_omni.dialogue.turn import DEFAULT_SYSTEM_PROMPT, DialogueConfig, TurnEngine

__all__ = ["AnswerAudio", "AnswerFinished", "AnswerPaused", "AnswerResumed", "AnswerStarted", "AnswerText", "Event", "Interrupted", "SpeechEnded",
           "SpeechStarted", "StateDecision", "TurnIgnored", "HistoryEntry", "Phase", "Session", "Phrase", "Speaker",
           "TextOnlySpeaker", "DEFAULT_SYSTEM_PROMPT", "DialogueConfig", "TurnEngine"]
