"""80-dim Kaldi-compatible log-mel filterbank features, offline and streaming.

Kaldi frames (snip_edges, povey window, per-frame DC removal and pre-emphasis, dither 0) depend
only on the samples inside their own 25 ms window, so the stream (`FrameStream`) equals the
offline features computed by kaldi-native-fbank (both on end-aligned frames, see `framing`).
"""

from __future__ import annotations

from dataclasses import dataclass

import kaldi_native_fbank as knf
import numpy as np

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.framing import FrameStream, check_mono_float, end_aligned_frames

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
    """float32 mono audio at `config.sample_rate` -> [frames, num_mel_bins] float32 log-mel, one
    frame per complete 10 ms of audio (end-aligned frames)."""
    return end_aligned_frames(lambda x: _windows(x, config), audio, config.window, config.shift)


def _windows(audio: np.ndarray, config: FbankConfig) -> np.ndarray:
    """Kaldi fbank of every complete window (snip_edges)."""
    audio = check_mono_float(audio)
    computer = knf.OnlineFbank(config.knf_options())
    computer.accept_waveform(config.sample_rate, (audio * KALDI_SCALE).tolist())
    computer.input_finished()
    frames = [computer.get_frame(i) for i in range(computer.num_frames_ready)]
    if not frames:
        return np.zeros((0, config.num_mel_bins), dtype=np.float32)
    return np.asarray(frames, dtype=np.float32)


class FeatureStream(FrameStream):
    """Fbank chunks from PCM pieces of any size (see `freeze_omni.audio.framing`)."""

    def __init__(self, config: FbankConfig = FbankConfig()) -> None:
        super().__init__(lambda audio: _windows(audio, config), config.window, config.shift,
                         config.chunk_frames, config.num_mel_bins)
        self.config = config
