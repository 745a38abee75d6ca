"""Text-to-token training data for the AR decoder, cached in shards under the data folder.

Texts: the corpus text mix with far larger quotas than the speech corpus uses (all fortune
sentences, many more generated questions, statements, numbers, dates, times, names), TRAIN split
only; held-out sentences come from the dev split, the same ones the codec is measured on.
Each text is spoken once with a delivery sampled as the corpus builder samples it for the Piper
voice (rate 0.85-1.2, duration noise x 0.7-1.3), so durations vary as in real speech.
Shards hold ids, durations and tokens of `SHARD` texts and are keyed by their texts, the seed
and the codec's codebook, so an interrupted or larger run reuses them.
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from freeze_omni.codec.model import Codec
from freeze_omni.decoder.alignment import token_owners
from freeze_omni.decoder.phonemes import shared_phonemizer
from freeze_omni.decoder.targets import PiperTargets

SHARD = 500
SHARD_FORMAT = 1


@cache
def _pool(seed: int) -> tuple[str, ...]:
    from freeze_omni.data.texts import TextQuotas, default_texts

    quotas = TextQuotas(fortunes=100_000, questions=8000, statements=4000, numbers=1500, dates=1000,
                        times=1000, names=1500)
    return tuple(item.text for item in default_texts(seed, quotas))


def tts_texts(split: str, count: int, seed: int = 0) -> list[str]:
    """`count` texts of one split in a shuffled order that is prefix-stable (more texts only append)."""
    from freeze_omni.data.plan import text_split

    if split == "dev":
        from freeze_omni.codec.train import split_texts

        return split_texts("dev", seed)[:count]
    texts = [t for t in _pool(seed) if text_split(t) == split]
    random.Random(f"decoder-{split}-{seed}").shuffle(texts)
    return texts[:count]


@dataclass
class TokenSet:
    """Sentences as (phoneme ids, durations, codec tokens), with the text each came from."""

    ids: list[np.ndarray]
    durations: list[np.ndarray]
    tokens: list[np.ndarray]
    text_index: np.ndarray
    texts: list[str]

    def owners(self, i: int, stack: int) -> np.ndarray:
        return token_owners(self.durations[i], stack)

    def __len__(self) -> int:
        return len(self.ids)


def codec_key(codec: Codec) -> str:
    return hashlib.sha1(codec.codebook.numpy().tobytes()).hexdigest()[:10]


def _shard_key(texts: Sequence[str], seed: int, codec: Codec) -> str:
    return hashlib.sha1(("\n".join(texts) + f"|{seed}|{codec_key(codec)}").encode()).hexdigest()[:16]


def _split(array: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(array, np.cumsum(lengths)[:-1]) if len(lengths) else []


def build_tokens(texts: Sequence[str], folder: Path, codec: Codec, seed: int = 0, threads: int = 1,
                 log: Callable[[str], None] | None = None) -> TokenSet:
    """Every text's sentences through Piper (sampled delivery) -> tokens; shards on disk are reused."""
    from freeze_omni.codec.train import piper_scales

    folder.mkdir(parents=True, exist_ok=True)
    targets: PiperTargets | None = None
    phonemizer = shared_phonemizer()
    out = TokenSet([], [], [], np.zeros(0, np.int64), list(texts))
    owners: list[np.ndarray] = []
    for first in range(0, len(texts), SHARD):
        chunk = list(texts[first:first + SHARD])
        path = folder / f"tokens{SHARD_FORMAT}-{first // SHARD:05d}-{_shard_key(chunk, seed, codec)}.npz"
        if not path.is_file():
            targets = targets or PiperTargets(codec, threads)
            rows, index = [], []
            for i, text in enumerate(chunk):
                for sentence in phonemizer.sentences(text):
                    rows.append(targets(sentence.ids, piper_scales(text, seed)))
                    index.append(i)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, ids=np.concatenate([r.ids for r in rows]), durations=np.concatenate([r.durations for r in rows]),
                     tokens=np.concatenate([r.tokens for r in rows]).astype(np.int16),
                     id_lengths=np.array([len(r.ids) for r in rows]), token_lengths=np.array([len(r.tokens) for r in rows]),
                     text_index=np.array(index, np.int64))
            tmp.replace(path)
            if log:
                log(f"decoder tokens: {first + len(chunk)}/{len(texts)} texts ({folder.name})")
        with np.load(path) as shard:
            out.ids += _split(shard["ids"], shard["id_lengths"])
            out.durations += _split(shard["durations"], shard["id_lengths"])
            out.tokens += [t.astype(np.int64) for t in _split(shard["tokens"], shard["token_lengths"])]
            owners.append(shard["text_index"] + first)
    out.text_index = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    return out


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
