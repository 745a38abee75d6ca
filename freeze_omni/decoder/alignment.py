"""Codec tokens interleaved with ADVANCE/STOP: the explicit monotonic alignment the AR decoder learns.

Piper gives the number of latent frames of every phoneme id; the codec puts `stack` frames into
one token. A token belongs to the phoneme id that covers its *first* frame. A token that straddles
two ids (its second frame lies in the next id) stays with the first: its code mixes both ids'
prior means, and the decoder sees the next id through the bidirectional phoneme encoder, so it
can still predict it. Ids shorter than `stack` frames may own no token at all; they are stepped
over with an immediate ADVANCE.

Output symbols: codes 0..codes-1, then ADVANCE (move the pointer to the next phoneme id), STOP
(after the last id's tokens), and BOS (input only: the "previous symbol" of the first step).

    ids:      ^   h   _   e   ...
    symbols:  c c A c c c A A c c ... STOP
    pointer:  0 0 0 1 1 1 1 2 3 3 ...     (the id whose encoder state the step reads)
    count:    0 1 2 0 1 2 3 0 0 1 ...     (tokens already emitted for the current id)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Vocab:
    """Symbol ids of one decoder: `codes` codec tokens plus three control symbols."""

    codes: int

    @property
    def advance(self) -> int:
        return self.codes

    @property
    def stop(self) -> int:
        return self.codes + 1

    @property
    def bos(self) -> int:
        return self.codes + 2

    @property
    def outputs(self) -> int:
        """Size of the output layer (codes + ADVANCE + STOP)."""
        return self.codes + 2

    @property
    def inputs(self) -> int:
        """Size of the input embedding (outputs + BOS)."""
        return self.codes + 3


def token_owners(durations: np.ndarray, stack: int) -> np.ndarray:
    """Phoneme-id index of each codec token: the id covering the token's first frame.

    durations [P] frames per id -> owners [ceil(sum / stack)], non-decreasing.
    """
    durations = np.asarray(durations, np.int64)
    frames = int(durations.sum())
    first_frames = np.arange(0, frames, stack)
    ends = np.cumsum(durations)
    return np.searchsorted(ends, first_frames, side="right").astype(np.int64)


@dataclass(frozen=True)
class Aligned:
    """One phrase as teacher-forcing rows: what the decoder reads and must emit at each step."""

    inputs: np.ndarray  # [L] previous symbol (BOS first)
    pointer: np.ndarray  # [L] phoneme-id index the step reads
    count: np.ndarray  # [L] codec tokens already emitted for that id
    targets: np.ndarray  # [L] symbol to emit


def interleave(tokens: np.ndarray, owners: np.ndarray, ids: int, vocab: Vocab) -> Aligned:
    """Codec tokens [N] with their owner ids [N] over a phrase of `ids` phoneme ids -> rows."""
    tokens, owners = np.asarray(tokens, np.int64), np.asarray(owners, np.int64)
    if len(tokens) != len(owners):
        raise ValueError(f"{len(tokens)} tokens but {len(owners)} owners")
    if ids < 1 or (len(owners) and (owners.min() < 0 or owners.max() >= ids or np.any(np.diff(owners) < 0))):
        raise ValueError("owners must be non-decreasing phoneme-id indices below the phrase length")
    per_id = np.bincount(owners, minlength=ids)
    targets: list[int] = []
    pointer: list[int] = []
    count: list[int] = []
    start = 0
    for index, n in enumerate(per_id):
        for k in range(n):
            targets.append(int(tokens[start + k]))
            pointer.append(index)
            count.append(k)
        start += n
        targets.append(vocab.advance if index < ids - 1 else vocab.stop)
        pointer.append(index)
        count.append(int(n))
    targets_array = np.array(targets, np.int64)
    inputs = np.concatenate([[vocab.bos], targets_array[:-1]]).astype(np.int64)
    return Aligned(inputs, np.array(pointer, np.int64), np.array(count, np.int64), targets_array)


def codes_of(symbols: np.ndarray | list[int], vocab: Vocab) -> np.ndarray:
    """Only the codec tokens of an emitted symbol sequence."""
    symbols = np.asarray(symbols, np.int64)
    return symbols[symbols < vocab.codes]
