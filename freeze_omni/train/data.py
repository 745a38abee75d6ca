"""Speech training data: manifests -> duration-bucketed batch plans -> padded feature batches.

A batch plan is a list of utterance indices, cheap to rebuild for any epoch, so a resumed run
(or every DDP rank) sees exactly the batches it would have seen. Features are computed when a
batch is loaded, with SpecAugment applied to training batches.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from freeze_omni.audio.io import read_audio
from freeze_omni.eval.manifest import SpeechItem, read_speech_manifest


@dataclass(frozen=True)
class Utterance:
    audio: Path
    text: str
    seconds: float


def read_utterances(manifest: str | Path, max_seconds: float = 30.0, limit: int | None = None) -> list[Utterance]:
    """Utterances of a manifest, skipping any longer than `max_seconds` (they would dominate memory)."""
    items: list[SpeechItem] = read_speech_manifest(manifest, limit=limit)
    utterances = []
    for item in items:
        seconds = float(item.extra.get("duration") or 0.0) or _duration(item.audio)
        if seconds <= max_seconds:
            utterances.append(Utterance(item.audio, item.text, seconds))
    return utterances


def _duration(path: Path) -> float:
    import soundfile as sf

    return sf.info(str(path)).duration


def plan_batches(utterances: Sequence[Utterance], max_batch_seconds: float, seed: int,
                 max_batch_size: int = 64) -> list[list[int]]:
    """Group utterances of similar length (less padding) into batches of at most `max_batch_seconds`
    padded audio, in a seeded random order. Lengths are jittered so buckets differ per epoch."""
    rng = random.Random(seed)
    order = sorted(range(len(utterances)), key=lambda i: utterances[i].seconds * rng.uniform(0.9, 1.1))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for index in order:
        seconds = utterances[index].seconds
        if current and (max(longest, seconds) * (len(current) + 1) > max_batch_seconds or len(current) >= max_batch_size):
            batches.append(current)
            current, longest = [], 0.0
        current.append(index)
        longest = max(longest, seconds)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def plan_chunked_batches(utterances: Sequence[Utterance], max_batch_seconds: float, seed: int, epoch: int,
                         sample_chunk: Callable[[random.Random], tuple[int, int]]) -> list[tuple[list[int], int, int, int]]:
    """One epoch of (indices, chunk_size, left_chunks, augment_seed), all fixed by (seed, epoch):
    dynamic chunk training draws one chunk setting per batch, and a resumed run draws the same."""
    epoch_seed = seed * 100_003 + epoch
    rng = random.Random(epoch_seed)
    plan = []
    for indices in plan_batches(utterances, max_batch_seconds, epoch_seed):
        chunk_size, left_chunks = sample_chunk(rng)
        plan.append((indices, chunk_size, left_chunks, rng.randrange(2**31)))
    return plan


def pad_features(features: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """[t_i, bins] arrays -> [batch, max_t, bins] float32 (zero padded) and lengths [batch]."""
    lengths = torch.tensor([f.shape[0] for f in features], dtype=torch.long)
    batch = torch.zeros(len(features), int(lengths.max()), features[0].shape[1], dtype=torch.float32)
    for row, f in enumerate(features):
        batch[row, : f.shape[0]] = torch.from_numpy(np.asarray(f, dtype=np.float32))
    return batch, lengths


def load_feature_batch(utterances: Sequence[Utterance], indices: Sequence[int],
                       featurize: Callable[[np.ndarray], np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    feats = [featurize(read_audio(utterances[i].audio)) for i in indices]
    batch, lengths = pad_features(feats)
    return batch, lengths, [utterances[i].text for i in indices]


@dataclass(frozen=True)
class SpecAugmentConfig:
    freq_masks: int = 2
    max_freq_width: int = 10
    time_masks: int = 2
    max_time_fraction: float = 0.05  # of the utterance, per mask
    max_time_width: int = 40


def spec_augment(feats: torch.Tensor, lengths: torch.Tensor, config: SpecAugmentConfig,
                 generator: torch.Generator) -> torch.Tensor:
    """Zero random frequency bands and time spans of each utterance (Park et al., 2019).

    Masked values are set to each utterance's mean, so masks carry no level information.
    """
    out = feats.clone()
    bins = feats.shape[-1]
    for row, length in enumerate(lengths.tolist()):
        fill = out[row, :length].mean()
        for _ in range(config.freq_masks):
            width = int(torch.randint(0, config.max_freq_width + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, bins - width), (1,), generator=generator))
            out[row, :length, start:start + width] = fill
        limit = min(config.max_time_width, int(length * config.max_time_fraction))
        for _ in range(config.time_masks):
            width = int(torch.randint(0, limit + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, length - width), (1,), generator=generator))
            out[row, start:start + width] = fill
    return out
