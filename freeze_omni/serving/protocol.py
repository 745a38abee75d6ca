"""The WebSocket protocol as pure functions: check what clients send, shape what they receive.

Documented for client writers in docs/protocol.md. Up: one JSON `hello`, then binary PCM16 LE
mono 16 kHz frames. Down: JSON events (text frames) and answer audio (binary PCM16 LE frames at
the rate announced in `ready`). Every problem the client can cause becomes an `error` message
with a stable `code`; `fatal` ones are followed by the server closing the connection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.io import float_to_pcm16
from freeze_omni.dialogue.events import (AnswerAudio, AnswerFinished, AnswerPaused, AnswerResumed, AnswerStarted,
                                         AnswerText, Event, Interrupted, SpeechEnded, SpeechStarted, StateDecision,
                                         TurnIgnored)
from freeze_omni.errors import FreezeOmniError

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 2 * SAMPLE_RATE  # one second of PCM16 per frame at most
MAX_SYSTEM_PROMPT_CHARS = 2000
MAX_TEXT_BYTES = 8192


class ProtocolError(FreezeOmniError):
    def __init__(self, code: str, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.code, self.fatal = code, fatal

    def message(self) -> dict:
        return error_message(self.code, str(self), self.fatal)


@dataclass(frozen=True)
class Hello:
    system_prompt: str | None  # None: the server's default
    seed: int | None  # sampling seed for a reproducible conversation; None: a random one


def error_message(code: str, message: str, fatal: bool = False) -> dict:
    return {"type": "error", "code": code, "message": message, "fatal": fatal}


def parse_hello(text: str | None) -> Hello:
    """The first message: `{"type": "hello", "sample_rate": 16000, "format": "pcm16", "system_prompt"?, "seed"?}`."""
    if text is None:
        raise ProtocolError("bad_hello", "the first message must be a JSON text hello, not binary", fatal=True)
    try:
        hello = json.loads(text) if len(text) <= MAX_TEXT_BYTES else None
    except ValueError:
        hello = None
    if not isinstance(hello, dict) or hello.get("type") != "hello":
        raise ProtocolError("bad_hello", 'the first message must be {"type": "hello", ...} (JSON)', fatal=True)
    if hello.get("sample_rate") != SAMPLE_RATE or hello.get("format", "pcm16") != "pcm16":
        raise ProtocolError("unsupported_audio", f"send 16-bit PCM at {SAMPLE_RATE} Hz (got sample_rate="
                            f"{hello.get('sample_rate')!r}, format={hello.get('format')!r})", fatal=True)
    prompt = hello.get("system_prompt")
    if prompt is not None and (not isinstance(prompt, str) or len(prompt) > MAX_SYSTEM_PROMPT_CHARS):
        raise ProtocolError("bad_hello", f"system_prompt must be a string of at most {MAX_SYSTEM_PROMPT_CHARS} "
                            "characters", fatal=True)
    seed = hello.get("seed")
    if seed is not None and (type(seed) is not int or not 0 <= seed < 2 ** 31):
        raise ProtocolError("bad_hello", "seed must be an integer in [0, 2**31)", fatal=True)
    return Hello(prompt.strip() or None if isinstance(prompt, str) else None, seed)


def parse_audio(frame: bytes, max_bytes: int = MAX_FRAME_BYTES) -> np.ndarray:
    """A binary frame of PCM16 LE mono -> float32 samples in [-1, 1]."""
    if len(frame) > max_bytes:
        raise ProtocolError("frame_too_large", f"audio frames hold at most {max_bytes} bytes, got {len(frame)}")
    if len(frame) % 2:
        raise ProtocolError("bad_frame", f"a PCM16 frame has an even number of bytes, got {len(frame)}")
    return np.frombuffer(frame, "<i2").astype(np.float32) / 32768.0


def parse_text(text: str) -> str:
    """A text message after the hello: only `{"type": "bye"}` is understood; returns its type."""
    try:
        message = json.loads(text) if len(text) <= MAX_TEXT_BYTES else None
    except ValueError:
        message = None
    if isinstance(message, dict) and message.get("type") == "bye":
        return "bye"
    raise ProtocolError("unexpected_text", "after the hello, send audio as binary frames (or {\"type\": \"bye\"})")


def ready_message(session_id: str, output_sample_rate: int) -> dict:
    return {"type": "ready", "protocol": PROTOCOL_VERSION, "session": session_id, "sample_rate": SAMPLE_RATE,
            "output_sample_rate": output_sample_rate, "chunk_ms": 160, "max_frame_bytes": MAX_FRAME_BYTES}


def event_message(event: Event) -> dict | bytes:
    """JSON for an event; answer audio as PCM16 LE bytes."""
    t = round(event.t_ms, 1)
    match event:
        case AnswerAudio():
            return float_to_pcm16(event.pcm).astype("<i2").tobytes()
        case SpeechStarted() | SpeechEnded():
            kind = "speech_started" if isinstance(event, SpeechStarted) else "speech_ended"
            return {"type": kind, "t_ms": t, "speech_ms": round(event.speech_ms, 1)}
        case StateDecision():
            return {"type": "state", "t_ms": t, "state": event.state.name.lower(),
                    "probabilities": [round(p, 4) for p in event.probabilities], "barge_in": event.barge_in}
        case AnswerStarted():
            return {"type": "answer_started", "t_ms": t, "speech_end_ms": round(event.speech_end_ms, 1)}
        case AnswerText():
            return {"type": "answer_text", "t_ms": t, "text": event.text}
        case AnswerFinished():
            return {"type": "answer_finished", "t_ms": t, "text": event.text}
        case AnswerPaused():
            return {"type": "answer_paused", "t_ms": t, "unplayed_samples": event.unplayed_samples}
        case AnswerResumed():
            return {"type": "answer_resumed", "t_ms": t}
        case Interrupted():
            return {"type": "interrupted", "t_ms": t, "kept_text": event.kept_text}
        case TurnIgnored():
            return {"type": "turn_ignored", "t_ms": t, "reason": event.reason}
    raise TypeError(f"no message for {type(event).__name__}")
