"""What every stage that learns from corpus speech shares: its data settings, the dynamic-chunk
batch plan, feature batches with SpecAugment, and held-out batches for evaluation."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from freeze_omni.encoder import sample_chunk_config
from freeze_omni.eval.manifest import evenly_spaced
from freeze_omni.paths import data_dir
from freeze_omni.train.config import StageSettings
from freeze_omni.train.data import (SpecAugmentConfig, Utterance, load_feature_batch, plan_chunked_batches,
                                    read_utterances, spec_augment)

BatchSpec = tuple[list[int], int, int, int]  # utterance indices, chunk size, left chunks, SpecAugment seed


@dataclass
class SpeechDataSettings(StageSettings):
    corpus: str = ""                  # folder with train.jsonl / dev.jsonl; "" = the default corpus
    max_batch_seconds: float = 100.0  # padded audio per batch
    max_utterance_seconds: float = 20.0
    max_chunk: int = 16               # dynamic chunk sizes 1..max_chunk encoder frames
    full_context_prob: float = 0.3
    max_left_chunks: int = 8
    spec_augment: bool = True
    eval_utterances: int = 60
    train_limit: int = 0              # use only the first N training utterances (0 = all)

    def corpus_dir(self) -> Path:
        return Path(self.corpus) if self.corpus else data_dir() / "corpus" / "default"

    def train_utterances(self) -> list[Utterance]:
        """The training split as these settings select it (length cap, `train_limit`)."""
        return read_utterances(self.corpus_dir() / "train.jsonl", self.max_utterance_seconds,
                               limit=self.train_limit or None)


class ChunkedSpeechData:
    def __init__(self, settings: SpeechDataSettings, featurize: Callable[[np.ndarray], np.ndarray]) -> None:
        self.settings = settings
        self.featurize = featurize
        self.train_set = settings.train_utterances()
        dev = read_utterances(settings.corpus_dir() / "dev.jsonl", settings.max_utterance_seconds)
        self.dev_set = evenly_spaced(dev, settings.eval_utterances)

    def plan(self, epoch: int, seed: int) -> list[BatchSpec]:
        return plan_chunked_batches(self.train_set, self.settings.max_batch_seconds, seed, epoch, self._sample_chunk)

    def _sample_chunk(self, rng: random.Random) -> tuple[int, int]:
        chunk = sample_chunk_config(rng, self.settings.max_chunk, self.settings.full_context_prob,
                                    self.settings.max_left_chunks)
        return chunk.chunk_size, chunk.left_chunks

    def training_features(self, spec: BatchSpec) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        indices, _, _, augment_seed = spec
        feats, lengths, texts = load_feature_batch(self.train_set, indices, self.featurize)
        if self.settings.spec_augment:
            feats = spec_augment(feats, lengths, SpecAugmentConfig(), torch.Generator().manual_seed(augment_seed))
        return feats, lengths, texts

    def dev_batches(self, size: int = 8) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        for start in range(0, len(self.dev_set), size):
            yield load_feature_batch(self.dev_set, list(range(start, min(start + size, len(self.dev_set)))),
                                     self.featurize)
