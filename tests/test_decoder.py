"""Speech decoder: alignment targets, sampling rules, step == teacher forcing, length guard."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from freeze_omni.decoder.alignment import Vocab, codes_of, interleave, token_owners
from freeze_omni.decoder.batch import IGNORE, collate, pad_hidden
from freeze_omni.decoder.generate import codec_tokens, prior_closeness, speak_ids, start, step
from freeze_omni.decoder.model import DecoderConfig, SpeechDecoder
from freeze_omni.decoder.sampling import SamplingConfig, choose_code, legal, pace, penalise, top_k
from freeze_omni.decoder.targets import shared_voice_text
from freeze_omni.decoder.weights import load_decoder, save_decoder

pytestmark = pytest.mark.usefixtures("one_thread")
VOCAB = Vocab(16)
CONFIG = DecoderConfig(codes=16, phoneme_symbols=20, llm_hidden=12, dim=32, heads=4, encoder_layers=1,
                       decoder_layers=2, prefix_layers=1, dropout=0.0, prefix_bias=0.0)


def test_owner_is_the_id_covering_the_first_frame():
    # ids of 3, 0, 1, 4 frames; tokens of 2 frames start at frames 0, 2, 4, 6
    assert token_owners(np.array([3, 0, 1, 4]), 2).tolist() == [0, 0, 3, 3]
    assert token_owners(np.array([1, 1, 1]), 2).tolist() == [0, 2]


def test_interleave_rows():
    aligned = interleave(np.array([5, 5, 7, 7]), np.array([0, 0, 3, 3]), 4, VOCAB)
    a, s = VOCAB.advance, VOCAB.stop
    assert aligned.targets.tolist() == [5, 5, a, a, a, 7, 7, s]
    assert aligned.inputs.tolist() == [VOCAB.bos, 5, 5, a, a, a, 7, 7]
    assert aligned.pointer.tolist() == [0, 0, 0, 1, 2, 3, 3, 3]
    assert aligned.count.tolist() == [0, 1, 2, 0, 0, 0, 1, 2]
    assert codes_of(aligned.targets, VOCAB).tolist() == [5, 5, 7, 7]
    with pytest.raises(ValueError):
        interleave(np.array([1, 2]), np.array([1, 0]), 2, VOCAB)


def test_collate_pads_targets_with_ignore():
    rows = [interleave(np.array([1]), np.array([0]), 1, VOCAB), interleave(np.array([1, 2, 3]), np.array([0, 1, 1]), 2, VOCAB)]
    batch = collate([np.array([3]), np.array([4, 5])], rows)
    assert batch["targets"].shape == (2, 5)
    assert batch["targets"][0, 2:].eq(IGNORE).all() and batch["id_lengths"].tolist() == [1, 2]
    hidden, lengths = pad_hidden([torch.ones(2, 3), torch.ones(4, 3)])
    assert hidden.shape == (2, 4, 3) and lengths.tolist() == [2, 4] and hidden[0, 2:].eq(0).all()


def test_legal_moves_and_guard():
    logits = torch.zeros(VOCAB.outputs)
    middle = legal(logits, VOCAB, pointer=0, ids=3, count=0, max_count=5)
    assert middle[VOCAB.stop] == float("-inf") and middle[VOCAB.advance] == 0
    last = legal(logits, VOCAB, pointer=2, ids=3, count=0, max_count=5)
    assert last[VOCAB.advance] == float("-inf") and last[VOCAB.stop] == 0
    guarded = legal(logits, VOCAB, pointer=0, ids=3, count=5, max_count=5)
    assert torch.isinf(guarded[: VOCAB.codes]).all() and top_k(guarded, 3, 1.0, None) == VOCAB.advance


def test_penalty_and_top_k():
    logits = torch.tensor([2.0, -1.0, 1.0, 0.5])
    out = penalise(logits, [0, 1], 2.0)
    assert out.tolist() == [1.0, -2.0, 1.0, 0.5]
    assert penalise(logits, [0], 1.0) is logits
    assert top_k(logits, 1, 1.0, None) == 0
    generator = torch.Generator().manual_seed(0)
    assert {top_k(logits, 2, 1.0, generator) for _ in range(50)} == {0, 2}


def test_pace_shifts_only_the_moves_that_end_a_phoneme():
    logits = torch.zeros(VOCAB.outputs)
    assert pace(logits, VOCAB, 0.0) is logits
    slower = pace(logits, VOCAB, -2.0)
    assert slower[VOCAB.advance] == slower[VOCAB.stop] == -2.0
    assert slower[: VOCAB.codes].eq(0).all() and logits.eq(0).all()


def test_a_negative_pace_bias_speaks_longer():
    torch.manual_seed(0)
    model = SpeechDecoder(CONFIG).eval()
    ids = np.arange(6)
    lengths = [speak_ids(model, ids, SamplingConfig(top_k=1, max_tokens_per_phoneme=8, pace_bias=bias)).size
               for bias in (4.0, 0.0, -4.0)]
    assert lengths[0] < lengths[1] < lengths[2] <= 8 * len(ids)


def test_the_prior_weight_trades_the_decoder_code_for_the_one_nearest_the_prior():
    logits, closeness = torch.tensor([3.0, 2.0, 0.0]), torch.tensor([-5.0, 0.0, -1.0])
    assert choose_code(logits, closeness, 0.0, 1, 1.0, None) == 0
    assert choose_code(logits, closeness, 0.1, 1, 1.0, None) == 0
    assert choose_code(logits, closeness, 1.0, 1, 1.0, None) == 1
    for weight in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="prior_weight"):
            SamplingConfig(prior_weight=weight)


def test_the_voice_prior_chooses_each_code_but_not_whether_to_emit_one():
    torch.manual_seed(0)
    model = SpeechDecoder(CONFIG).eval()
    model.decoder.head.codebook.normal_(std=0.1)
    ids = np.array([1, 0, 14, 0, 18, 0, 2])
    nearest = prior_closeness(model, ids).argmax(-1)
    pairs = torch.from_numpy(shared_voice_text().prior(ids)).repeat(1, 2)  # both frames of a token inside one id
    assert nearest.tolist() == torch.cdist(pairs, model.decoder.head.codebook).argmin(-1).tolist()
    assert nearest.unique().numel() > 1
    sampling = SamplingConfig(top_k=1, max_tokens_per_phoneme=4, prior_weight=1e6)
    state, codes = start(model, ids), []
    while not state.done:
        pointer = state.pointer
        plain = step(model, replace(state, history=list(state.history)), replace(sampling, prior_weight=0.0))
        symbol = step(model, state, sampling)
        if plain < CONFIG.vocab.codes:
            assert symbol == nearest[pointer]
            codes.append(symbol)
        else:
            assert symbol == plain
    assert codes and len(set(codes)) > 1
    with pytest.raises(ValueError, match="prior"):  # codes that are not frames of the voice's latent
        prior_closeness(SpeechDecoder(replace(CONFIG, code_dim=24)), ids)


def _example(seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, CONFIG.phoneme_symbols, 6)
    aligned = interleave(rng.integers(0, 16, 9), np.sort(rng.integers(0, 6, 9)), 6, CONFIG.vocab)
    return ids, aligned


@pytest.mark.parametrize("with_prefix", [False, True])
def test_step_equals_teacher_forcing(with_prefix):
    torch.manual_seed(0)
    model = SpeechDecoder(CONFIG).eval()
    torch.nn.init.normal_(model.prefix.values.weight)  # a prefix that changes the output
    ids, aligned = _example()
    batch = collate([ids], [aligned])
    hidden = torch.randn(5, CONFIG.llm_hidden) if with_prefix else None
    extra = {} if hidden is None else dict(zip(("hidden", "hidden_lengths"), pad_hidden([hidden])))
    with torch.no_grad():
        whole = model.logits(batch["ids"], batch["id_lengths"], batch["inputs"], batch["pointer"], batch["count"], **extra)[0]
        state = start(model, ids, hidden)
        steps = []
        for s in range(len(aligned.targets)):
            logits, state.caches = model.decoder.step(
                torch.tensor([int(aligned.inputs[s])]), state.encoded[int(aligned.pointer[s])][None],
                torch.tensor([int(aligned.count[s])]), s, state.caches, state.prefix)
            steps.append(logits[0])
    assert torch.allclose(torch.stack(steps), whole, atol=1e-5)
    if with_prefix:
        plain = model.logits(batch["ids"], batch["id_lengths"], batch["inputs"], batch["pointer"], batch["count"])[0]
        assert not torch.allclose(plain, whole, atol=1e-3)


def test_padding_does_not_change_a_row():
    torch.manual_seed(0)
    model = SpeechDecoder(CONFIG).eval()
    (ids_a, a), (ids_b, b) = _example(1), _example(2)
    b = interleave(np.arange(12) % 16, np.sort(np.arange(12) % 7), 7, CONFIG.vocab)
    ids_b = np.arange(7)
    with torch.no_grad():
        alone = model.logits(**{k: v for k, v in collate([ids_a], [a]).items() if k != "targets"})[0]
        both = model.logits(**{k: v for k, v in collate([ids_a, ids_b], [a, b]).items() if k != "targets"})[0]
    assert torch.allclose(alone, both[: len(a.targets)], atol=1e-5)


def test_generation_follows_the_alignment_and_stops():
    torch.manual_seed(0)
    model = SpeechDecoder(CONFIG).eval()
    ids = np.arange(5)
    sampling = SamplingConfig(top_k=3, max_tokens_per_phoneme=4, seed=1)
    state = start(model, ids, seed=1)
    symbols = []
    while not state.done:
        symbols.append(step(model, state, sampling))
        assert state.pointer < len(ids)
    assert symbols[-1] == CONFIG.vocab.stop and symbols.count(CONFIG.vocab.advance) == len(ids) - 1
    runs = np.split(np.array(symbols[:-1]), np.flatnonzero(np.array(symbols[:-1]) == CONFIG.vocab.advance))
    assert max(int((r < CONFIG.codes).sum()) for r in runs) <= 4  # the length guard
    again = speak_ids(model, ids, sampling)
    assert again.tolist() == [s for s in symbols if s < CONFIG.codes]  # same seed, same tokens
    assert list(codec_tokens(model, start(model, ids, seed=1), sampling)) == again.tolist()
    with pytest.raises(ValueError):
        step(model, state, sampling)


def test_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    model = SpeechDecoder(CONFIG)
    path = save_decoder(model, tmp_path / "decoder.safetensors", {"note": "test"})
    loaded = load_decoder(path)
    assert loaded.config == CONFIG and not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.allclose(a.half().float(), b), name
