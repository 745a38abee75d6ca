"""Voice activity detection with Silero VAD, streaming, with the recurrent state held by the caller.

The bundled `silero_vad.onnx` is run directly with onnxruntime: each 512-sample window (32 ms at
16 kHz) goes in with the 64 samples before it and the [2, 1, 128] recurrent state, and a speech
probability and the next state come out. Those values live in a `VadState` that the caller keeps,
so one `SpeechDetector` (one ONNX session) serves any number of concurrent sessions, and a
session's state can be stored, copied or moved to another replica.

Decisions use hysteresis: speech starts after `min_speech_ms` with probability >= `threshold`
and ends after `min_silence_ms` below `end_threshold`. Event times are padded by
`speech_pad_ms` so a segment keeps its soft onset and release.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.framing import check_mono_float
from freeze_omni.errors import AudioError, ModelNotFoundError
from freeze_omni.paths import package_dir

WINDOW = 512  # samples per model step at 16 kHz
CONTEXT = 64  # samples of the previous window the model sees again
STATE_SHAPE = (2, 1, 128)


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5  # probability at which speech (re)starts
    end_threshold: float = 0.35  # below this counts as silence (hysteresis, as Silero's own -0.15)
    min_silence_ms: float = 400.0  # silence this long ends a segment: pauses inside a sentence do not
    min_speech_ms: float = 250.0  # shorter bursts (clicks, coughs) never start a segment
    speech_pad_ms: float = 30.0  # added before each start and after each end

    def samples(self, ms: float) -> int:
        return int(round(ms * SAMPLE_RATE / 1000.0))


@dataclass(frozen=True)
class VadEvent:
    kind: Literal["start", "end"]
    t_ms: float  # where the segment starts/ends in the stream (padded)
    sample: int  # the same position in samples
    decided_sample: int  # how far the stream had got when the detector decided (t_ms lags this)


@dataclass
class VadState:
    """Everything one stream carries between calls."""

    rnn: np.ndarray = field(default_factory=lambda: np.zeros(STATE_SHAPE, dtype=np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT, dtype=np.float32))
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))  # < one window
    samples_seen: int = 0  # samples fed to the model (whole windows only)
    in_speech: bool = False
    speech_since: int | None = None  # first sample of the current run of speech windows (not yet a start)
    silence_since: int | None = None  # first sample of the current run of silent windows inside speech
    voiced_until: int = 0  # samples_seen after the last window that was not clearly silent

    @property
    def speech_run_ms(self) -> float:
        """How long the speech heard outside a segment has lasted (0 when there is none): the
        turn engine pauses an answer on it before the segment's start is decided."""
        if self.speech_since is None:
            return 0.0
        return 1000.0 * (self.samples_seen - self.speech_since) / SAMPLE_RATE

    @property
    def silence_since_ms(self) -> float | None:
        """Where the silence inside the current segment began (None while speech goes on)."""
        return None if self.silence_since is None else 1000.0 * self.silence_since / SAMPLE_RATE


@cache
def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a 32 ms window takes ~0.1 ms; threads only add overhead
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def silero_model_path() -> Path:
    """`silero_vad/data/silero_vad.onnx` in the installed wheel (found without importing torch)."""
    path = package_dir("silero_vad", "pip install silero-vad==6.2.3") / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise ModelNotFoundError(f"Silero VAD model missing: {path}")
    return path


class SpeechDetector:
    """Turns PCM pieces of any size into speech start/end events; holds no per-stream state."""

    def __init__(self, config: VadConfig = VadConfig(), model_path: Path | None = None) -> None:
        self.config = config
        self._session = _session(model_path or silero_model_path())
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def initial_state(self) -> VadState:
        return VadState()

    def accept(self, pcm: np.ndarray, state: VadState) -> tuple[list[VadEvent], VadState]:
        """Add 16 kHz mono float32 samples; return the events decided by them and the new state."""
        samples = np.concatenate([state.pending, check_mono_float(pcm)])
        n_windows = samples.size // WINDOW
        state = replace(state, pending=samples[n_windows * WINDOW:].copy())
        events: list[VadEvent] = []
        for i in range(n_windows):
            window = samples[i * WINDOW:(i + 1) * WINDOW]
            probability, state = self.step(window, state)
            event, state = self._decide(probability, state)
            if event is not None:
                events.append(event)
                state = _after(event, state)
        return events, state

    def close_segment(self, state: VadState) -> VadState:
        """End the current speech segment without an event: speech that goes on must start anew
        (the turn engine calls this once it has decided on a turn)."""
        return replace(state, in_speech=False, speech_since=None, silence_since=None)

    def flush(self, state: VadState) -> tuple[list[VadEvent], VadState]:
        """End of stream: close an open segment at its last silence (or at the last sample)."""
        end_of_stream = state.samples_seen + state.pending.size
        if not state.in_speech:
            return [], replace(state, speech_since=None)
        if state.silence_since is not None:
            sample = min(state.silence_since + self.config.samples(self.config.speech_pad_ms), end_of_stream)
        else:
            sample = end_of_stream
        event = _event("end", sample, end_of_stream)
        return [event], _after(event, state)

    def step(self, window: np.ndarray, state: VadState) -> tuple[float, VadState]:
        """One model call on exactly one 512-sample window: its speech probability and new state."""
        window = check_mono_float(window)
        if window.shape != (WINDOW,):
            raise AudioError(f"a VAD step takes {WINDOW} samples, got shape {window.shape}")
        x = np.concatenate([state.context, window])[None, :]
        out, rnn = self._session.run(None, {"input": x, "state": state.rnn, "sr": self._sr})
        state = replace(state, rnn=rnn, context=window[-CONTEXT:].copy(), samples_seen=state.samples_seen + WINDOW)
        return float(out[0, 0]), state

    def _decide(self, probability: float, state: VadState) -> tuple[VadEvent | None, VadState]:
        """Hysteresis on the window that just ended at `state.samples_seen`."""
        cfg = self.config
        now = state.samples_seen
        if probability >= cfg.end_threshold:
            state = replace(state, voiced_until=now)
        window_start = now - WINDOW
        if not state.in_speech:
            if probability < cfg.end_threshold:
                return None, replace(state, speech_since=None)
            if probability < cfg.threshold:
                return None, state
            since = window_start if state.speech_since is None else state.speech_since
            if now - since >= cfg.samples(cfg.min_speech_ms):
                return _event("start", max(0, since - cfg.samples(cfg.speech_pad_ms)), now), state
            return None, replace(state, speech_since=since)
        if probability >= cfg.threshold:
            return None, replace(state, silence_since=None)
        if probability >= cfg.end_threshold:
            return None, state
        since = window_start if state.silence_since is None else state.silence_since
        if now - since >= cfg.samples(cfg.min_silence_ms):
            return _event("end", min(since + cfg.samples(cfg.speech_pad_ms), now), now), state
        return None, replace(state, silence_since=since)


def speech_segments(audio: np.ndarray, config: VadConfig = VadConfig()) -> list[tuple[float, float]]:
    """Offline convenience: (start_ms, end_ms) of every speech segment, via the streaming code."""
    detector = SpeechDetector(config)
    events, state = detector.accept(audio, detector.initial_state())
    events += detector.flush(state)[0]
    starts = [e.t_ms for e in events if e.kind == "start"]
    ends = [e.t_ms for e in events if e.kind == "end"]
    return list(zip(starts, ends))


def _event(kind: Literal["start", "end"], sample: int, decided: int) -> VadEvent:
    return VadEvent(kind=kind, t_ms=sample * 1000.0 / SAMPLE_RATE, sample=sample, decided_sample=decided)


def _after(event: VadEvent, state: VadState) -> VadState:
    return replace(state, in_speech=event.kind == "start", speech_since=None, silence_since=None)

