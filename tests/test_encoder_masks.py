import random

import pytest
import torch

from freeze_omni.encoder.masks import (
    FULL_CONTEXT,
    UNLIMITED,
    ChunkConfig,
    batch_mask,
    chunk_mask,
    first_needed_key,
    sample_chunk_config,
)


def _mask(n: int, chunk_size: int, left_chunks: int) -> list[list[int]]:
    pos = torch.arange(n)
    return chunk_mask(pos, pos, chunk_size, left_chunks).int().tolist()


def test_chunk_sees_itself_and_the_past_only():
    assert _mask(5, 2, UNLIMITED) == [
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
    ]


def test_left_context_is_counted_in_chunks():
    assert _mask(6, 2, 1) == [
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 1],
    ]
    assert _mask(4, 1, 0) == torch.eye(4, dtype=torch.int).tolist()


def test_full_context_and_chunk_one_unlimited_is_causal():
    assert _mask(3, FULL_CONTEXT, UNLIMITED) == [[1] * 3] * 3
    assert _mask(4, 1, UNLIMITED) == torch.ones(4, 4, dtype=torch.int).tril().tolist()


def test_mask_uses_absolute_positions_for_streaming_queries():
    queries, keys = torch.arange(4, 6), torch.arange(2, 6)
    assert chunk_mask(queries, keys, 2, 1).int().tolist() == [[1, 1, 1, 1], [1, 1, 1, 1]]
    assert chunk_mask(queries, keys, 2, 0).int().tolist() == [[0, 0, 1, 1], [0, 0, 1, 1]]


def test_bad_arguments_are_refused():
    pos = torch.arange(3)
    with pytest.raises(ValueError):
        chunk_mask(pos, pos, -2, UNLIMITED)
    with pytest.raises(ValueError):
        chunk_mask(pos, pos, 2, -3)


def test_batch_mask_hides_padding_and_never_leaves_a_query_blind():
    mask = batch_mask(torch.tensor([3, 5]), 5, 2, 0)
    assert mask.shape == (2, 1, 5, 5)
    assert not mask[0, 0, :3, 3:].any()  # real frames never see padding
    assert mask[0, 0].any(dim=-1).all()  # padded queries still see something (no NaN)
    assert torch.equal(mask[1, 0], chunk_mask(torch.arange(5), torch.arange(5), 2, 0))


def test_first_needed_key_trims_exactly_what_no_later_query_sees():
    assert first_needed_key(8, 4, 1) == 4
    assert first_needed_key(8, 4, 0) == 8
    assert first_needed_key(4, 4, 3) == 0
    assert first_needed_key(100, 4, UNLIMITED) == 0
    assert first_needed_key(100, FULL_CONTEXT, 2) == 0
    for q in range(8, 12):  # brute force: every later query's visible keys start at or after it
        visible = chunk_mask(torch.arange(q, 40), torch.arange(40), 4, 1).any(dim=0)
        assert visible.nonzero().min() == first_needed_key(q, 4, 1)


def test_dynamic_chunk_sampling_covers_full_and_limited_contexts():
    rng = random.Random(0)
    draws = [sample_chunk_config(rng, max_chunk=16, max_left_chunks=4) for _ in range(2000)]
    full = [d for d in draws if d.chunk_size == FULL_CONTEXT]
    assert 0.45 < len(full) / len(draws) < 0.55
    chunked = [d for d in draws if d.chunk_size != FULL_CONTEXT]
    assert {d.chunk_size for d in chunked} == set(range(1, 17))
    assert {d.left_chunks for d in chunked} == {UNLIMITED, 0, 1, 2, 3, 4}
    assert sample_chunk_config(random.Random(1), 8, full_context_prob=0.0).chunk_size >= 1
    assert sample_chunk_config(random.Random(1), 8, full_context_prob=1.0) == ChunkConfig(FULL_CONTEXT, UNLIMITED)
