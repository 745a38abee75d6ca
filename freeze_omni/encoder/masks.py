"""Chunk attention masks: which encoder frames may attend to which.

Frames are grouped into chunks of `chunk_size` frames (counted after subsampling) by absolute
position. A frame sees every frame of its own chunk and of the `left_chunks` chunks before it
(`UNLIMITED` = all earlier chunks), never a later chunk; so a chunk can be encoded as soon as its
last frame has arrived, and streaming output equals the masked full-utterance output.
`FULL_CONTEXT` as chunk size means no mask at all (offline, bidirectional).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

FULL_CONTEXT = 0
UNLIMITED = -1


def chunk_mask(query_positions: torch.Tensor, key_positions: torch.Tensor, chunk_size: int,
               left_chunks: int) -> torch.Tensor:
    """[q] and [k] absolute frame positions -> [q, k] bool, True where the query may attend the key."""
    if chunk_size == FULL_CONTEXT:
        return torch.ones(query_positions.numel(), key_positions.numel(), dtype=torch.bool,
                          device=query_positions.device)
    if chunk_size < 0:
        raise ValueError(f"chunk_size must be >= 0, got {chunk_size}")
    q_chunk = (query_positions // chunk_size)[:, None]
    k_chunk = (key_positions // chunk_size)[None, :]
    allowed = k_chunk <= q_chunk
    if left_chunks != UNLIMITED:
        if left_chunks < 0:
            raise ValueError(f"left_chunks must be >= 0 or UNLIMITED (-1), got {left_chunks}")
        allowed &= k_chunk >= q_chunk - left_chunks
    return allowed


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[b] valid lengths -> [b, max_len] bool, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def batch_mask(lengths: torch.Tensor, max_len: int, chunk_size: int, left_chunks: int) -> torch.Tensor:
    """[b] lengths -> [b, 1, max_len, max_len] bool for attention over a padded batch.

    Keys past a row's length are hidden. Padded queries see every key: their output is ignored, but
    a query with no visible key would give NaN, and NaN values leak through zero attention weights.
    """
    positions = torch.arange(max_len, device=lengths.device)
    valid = padding_mask(lengths, max_len)
    allowed = chunk_mask(positions, positions, chunk_size, left_chunks)[None] & valid[:, None, :]
    return (allowed | ~valid[:, :, None])[:, None]


def first_needed_key(next_query: int, chunk_size: int, left_chunks: int) -> int:
    """Earliest key position any query at or after `next_query` can still see (cache trimming)."""
    if chunk_size == FULL_CONTEXT or left_chunks == UNLIMITED:
        return 0
    return max(0, (next_query // chunk_size - left_chunks) * chunk_size)


@dataclass(frozen=True)
class ChunkConfig:
    chunk_size: int  # frames after subsampling; FULL_CONTEXT = no mask
    left_chunks: int  # UNLIMITED = all earlier chunks


def sample_chunk_config(rng: random.Random, max_chunk: int, full_context_prob: float = 0.5,
                        max_left_chunks: int = 8, unlimited_left_prob: float = 0.5) -> ChunkConfig:
    """Dynamic chunk training (as in WeNet): one draw per batch, so one model serves every latency.

    With `full_context_prob` the batch is unmasked; otherwise the chunk size is uniform in
    [1, max_chunk] and the left context is unlimited or uniform in [0, max_left_chunks].
    """
    if rng.random() < full_context_prob:
        return ChunkConfig(FULL_CONTEXT, UNLIMITED)
    chunk = rng.randint(1, max_chunk)
    left = UNLIMITED if rng.random() < unlimited_left_prob else rng.randint(0, max_left_chunks)
    return ChunkConfig(chunk, left)
