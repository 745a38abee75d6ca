"""Streaming of frame-based features (fbank, Whisper log-mel): what both share.

Both feature kinds frame the signal in fixed windows and hops whose frames depend only on the
samples inside their own window. A stream therefore keeps just the samples that no complete
window has consumed yet, computes every complete window with the offline function, and equals
the offline features by construction; its state is a small value a session can store or copy.

Frames are end-aligned: the signal starts with `window - shift` zeros (`lead_in`), so frame i
ends at sample (i + 1) * shift. A 160 ms chunk of audio then completes exactly its 16 frames; with
start-aligned frames the last ones would wait for 15 ms of the next chunk, and every decision
taken on a chunk would come one chunk (160 ms) late.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from freeze_omni.errors import AudioError


def check_mono_float(audio: np.ndarray) -> np.ndarray:
    """Every streaming stage takes mono float32 in [-1, 1]; anything else is a caller's mistake."""
    if not isinstance(audio, np.ndarray):
        raise AudioError(f"expected a numpy array of samples, got {type(audio).__name__}")
    if audio.ndim != 1:
        raise AudioError(f"expected mono samples of shape [n], got shape {audio.shape}")
    if audio.dtype.kind != "f":
        raise AudioError(f"expected float samples in [-1, 1], got {audio.dtype}; convert PCM first")
    if not np.isfinite(audio).all():
        raise AudioError("audio contains NaN or infinite samples")
    return audio.astype(np.float32, copy=False)


def lead_in(window: int, shift: int) -> np.ndarray:
    return np.zeros(window - shift, dtype=np.float32)


def end_aligned_frames(compute: Callable[[np.ndarray], np.ndarray], audio: np.ndarray, window: int,
                       shift: int) -> np.ndarray:
    """Offline features exactly as a stream computes them: `compute` over lead-in + audio."""
    return compute(np.concatenate([lead_in(window, shift), check_mono_float(audio)]))


@dataclass
class FrameStreamState:
    """Samples not yet covered by a complete window, frames not yet emitted as a full chunk."""

    samples: np.ndarray  # float32 [n]
    frames: np.ndarray   # float32 [n_frames, features]
    frames_emitted: int = 0


class FrameStream:
    """Accepts PCM pieces of any size and emits chunks of `chunk_frames` feature frames.

    Stateless itself: every call takes and returns a `FrameStreamState`, so one stream serves
    many sessions.
    """

    def __init__(self, compute: Callable[[np.ndarray], np.ndarray], window: int, shift: int,
                 chunk_frames: int, num_features: int) -> None:
        self.compute = compute
        self.window, self.shift = window, shift
        self.chunk_frames, self.num_features = chunk_frames, num_features

    def initial_state(self) -> FrameStreamState:
        return FrameStreamState(lead_in(self.window, self.shift), np.zeros((0, self.num_features), dtype=np.float32))

    def accept(self, pcm: np.ndarray, state: FrameStreamState) -> tuple[list[np.ndarray], FrameStreamState]:
        """Add samples; return the complete chunks now available ([chunk_frames, features] each)."""
        samples = np.concatenate([state.samples, check_mono_float(pcm)])
        frames = state.frames
        n_new = 0 if samples.size < self.window else 1 + (samples.size - self.window) // self.shift
        if n_new:
            used = (n_new - 1) * self.shift + self.window
            frames = np.concatenate([frames, self.compute(samples[:used])])
            samples = samples[n_new * self.shift:]
        n_chunks = frames.shape[0] // self.chunk_frames
        size = self.chunk_frames
        chunks = [frames[i * size:(i + 1) * size] for i in range(n_chunks)]
        return chunks, FrameStreamState(samples.copy(), frames[n_chunks * size:].copy(),
                                        state.frames_emitted + n_chunks * size)

    def flush(self, state: FrameStreamState) -> tuple[np.ndarray | None, FrameStreamState]:
        """End of input: the last partial chunk (fewer than `chunk_frames` frames), if any."""
        rest = state.frames
        done = FrameStreamState(np.zeros(0, dtype=np.float32), self.initial_state().frames,
                                state.frames_emitted + rest.shape[0])
        return (rest.copy() if rest.shape[0] else None), done
