"""80-dim Kaldi-compatible log-mel filterbank features, offline and streaming.

Kaldi frames (snip_edges, povey window, per-frame DC removal and pre-emphasis, dither 0) depend
only on the samples inside their own 25 ms window. So the stream keeps just the samples that no
complete window has consumed yet, computes every complete window with kaldi-native-fbank, and is
equal to the offline features by construction; its state is a small array that a session can
store, copy or serialise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import kaldi_native_fbank as knf
import numpy as np

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.errors import AudioError

# Kaldi tools read int16 samples; scale float audio to that range so values match `compute-fbank`.
KALDI_SCALE = 32768.0


@dataclass(frozen=True)
class FbankConfig:
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    sample_rate: int = SAMPLE_RATE
    dither: float = 0.0
    chunk_frames: int = 16  # 160 ms: the unit every streaming stage consumes

    @property
    def window(self) -> int:
        return int(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def shift(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms / 1000)

    def num_frames(self, num_samples: int) -> int:
        return 0 if num_samples < self.window else 1 + (num_samples - self.window) // self.shift

    def knf_options(self) -> knf.FbankOptions:
        opts = knf.FbankOptions()
        opts.frame_opts.samp_freq = self.sample_rate
        opts.frame_opts.frame_length_ms = self.frame_length_ms
        opts.frame_opts.frame_shift_ms = self.frame_shift_ms
        opts.frame_opts.dither = self.dither
        opts.frame_opts.snip_edges = True
        opts.mel_opts.num_bins = self.num_mel_bins
        return opts


def fbank(audio: np.ndarray, config: FbankConfig = FbankConfig()) -> np.ndarray:
    """float32 mono audio at `config.sample_rate` -> [frames, num_mel_bins] float32 log-mel."""
    audio = _check_audio(audio)
    computer = knf.OnlineFbank(config.knf_options())
    computer.accept_waveform(config.sample_rate, (audio * KALDI_SCALE).tolist())
    computer.input_finished()
    frames = [computer.get_frame(i) for i in range(computer.num_frames_ready)]
    if not frames:
        return np.zeros((0, config.num_mel_bins), dtype=np.float32)
    return np.asarray(frames, dtype=np.float32)


@dataclass
class FeatureStreamState:
    """What a stream carries between calls: samples not yet in a complete window, and frames
    computed but not yet emitted as a full chunk."""

    samples: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    frames: np.ndarray | None = None
    frames_emitted: int = 0


class FeatureStream:
    """Accepts PCM pieces of any size and emits fbank chunks of `config.chunk_frames` frames.

    The stream object is stateless configuration; every call takes and returns a
    `FeatureStreamState`, so one stream serves many sessions.
    """

    def __init__(self, config: FbankConfig = FbankConfig()) -> None:
        self.config = config

    def initial_state(self) -> FeatureStreamState:
        return FeatureStreamState(frames=np.zeros((0, self.config.num_mel_bins), dtype=np.float32))

    def accept(self, pcm: np.ndarray, state: FeatureStreamState) -> tuple[list[np.ndarray], FeatureStreamState]:
        """Add samples; return the complete chunks now available ([chunk_frames, bins] each)."""
        cfg = self.config
        samples = np.concatenate([state.samples, _check_audio(pcm)])
        n_new = cfg.num_frames(samples.size)
        frames = state.frames if state.frames is not None else self.initial_state().frames
        if n_new:
            used = (n_new - 1) * cfg.shift + cfg.window
            frames = np.concatenate([frames, fbank(samples[:used], cfg)])
            samples = samples[n_new * cfg.shift:]
        n_chunks = frames.shape[0] // cfg.chunk_frames
        chunks = [frames[i * cfg.chunk_frames:(i + 1) * cfg.chunk_frames] for i in range(n_chunks)]
        new_state = FeatureStreamState(
            samples=samples.copy(),
            frames=frames[n_chunks * cfg.chunk_frames:].copy(),
            frames_emitted=state.frames_emitted + n_chunks * cfg.chunk_frames,
        )
        return chunks, new_state

    def flush(self, state: FeatureStreamState) -> tuple[np.ndarray | None, FeatureStreamState]:
        """End of input: the last partial chunk (fewer than `chunk_frames` frames), if any."""
        rest = state.frames if state.frames is not None else self.initial_state().frames
        done = FeatureStreamState(frames=self.initial_state().frames,
                                  frames_emitted=state.frames_emitted + rest.shape[0])
        return (rest.copy() if rest.shape[0] else None), done


def _check_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise AudioError(f"expected mono samples of shape [n], got shape {audio.shape}")
    if audio.dtype.kind != "f":
        raise AudioError(f"expected float samples in [-1, 1], got {audio.dtype}; convert PCM first")
    return audio.astype(np.float32, copy=False)
