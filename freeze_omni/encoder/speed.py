"""Time of one 160 ms streaming step through features, encoder and adapter on this machine."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from freeze_omni.adapter import Adapter
from freeze_omni.audio.whisper_mel import MelStream
from freeze_omni.encoder.encoder import SpeechEncoder


@dataclass
class EncoderSpeed:
    step_ms_per_chunk: float  # median encoder + adapter time per chunk
    step_ms_per_chunk_p95: float
    encoder_ms: float  # medians of the parts
    adapter_ms: float
    features_ms: float  # log-mel of the chunk's audio (not part of step_ms_per_chunk)
    chunk_ms: float  # audio per chunk
    context_s: float  # audio already in the encoder cache when timing starts
    chunk_size: int
    left_chunks: int

    @property
    def rtf(self) -> float:
        """Encoder + adapter time per second of audio (REPORTS.md key of `bench encoder`)."""
        return self.step_ms_per_chunk / self.chunk_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "rtf": self.rtf}


def measure_encoder_speed(encoder: SpeechEncoder, adapter: Adapter, chunk_size: int, left_chunks: int,
                          context_s: float = 10.0, repeats: int = 50, warmup: int = 5, seed: int = 0) -> EncoderSpeed:
    """Stream `context_s` of audio first, then time `repeats` further chunks one at a time."""
    mel = MelStream()
    chunk_samples = mel.config.chunk_frames * mel.config.hop
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal(chunk_samples * (int(context_s * 1000 / 160) + warmup + repeats + 2)))
    mel_state, enc_cache, ad_cache = mel.initial_state(), encoder.initial_cache(chunk_size, left_chunks), adapter.initial_cache()
    times: dict[str, list[float]] = {"features": [], "encoder": [], "adapter": []}
    context_chunks = int(context_s * 1000 / 160)
    with torch.inference_mode():
        for i in range(context_chunks + warmup + repeats):
            t0 = time.perf_counter()
            chunks, mel_state = mel.accept(audio[i * chunk_samples:(i + 1) * chunk_samples].astype(np.float32), mel_state)
            feats = torch.from_numpy(np.concatenate(chunks)) if chunks else torch.zeros(0, mel.config.n_mels)
            t1 = time.perf_counter()
            frames, enc_cache = encoder.step(feats[None], enc_cache)
            t2 = time.perf_counter()
            _, ad_cache = adapter.step(frames, ad_cache)
            t3 = time.perf_counter()
            if i >= context_chunks + warmup:
                for name, ms in (("features", t1 - t0), ("encoder", t2 - t1), ("adapter", t3 - t2)):
                    times[name].append(ms * 1000)
    steps = np.add(times["encoder"], times["adapter"])
    return EncoderSpeed(
        step_ms_per_chunk=float(np.median(steps)), step_ms_per_chunk_p95=float(np.quantile(steps, 0.95)),
        encoder_ms=float(np.median(times["encoder"])), adapter_ms=float(np.median(times["adapter"])),
        features_ms=float(np.median(times["features"])), chunk_ms=1000.0 * chunk_samples / mel.config.sample_rate,
        context_s=context_chunks * chunk_samples / mel.config.sample_rate, chunk_size=chunk_size, left_chunks=left_chunks,
    )
