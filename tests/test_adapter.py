import random

import pytest
import torch

from freeze_omni.adapter import READ_TOKENS, Adapter, AdapterConfig
from freeze_omni.encoder import SCRATCH, WHISPER_TINY_EN

pytestmark = pytest.mark.usefixtures("one_thread")


def _adapter(layers: int, seed: int = 0, output_norm: bool = False) -> Adapter:
    torch.manual_seed(seed)
    return Adapter(AdapterConfig(input_dim=24, output_dim=40, layers=layers, output_norm=output_norm)).eval()


def test_rate_follows_the_encoder_and_width_follows_the_llm():
    whisper, scratch = AdapterConfig.for_encoder(WHISPER_TINY_EN, 576), AdapterConfig.for_encoder(SCRATCH, 896)
    assert (whisper.layers, whisper.input_dim, whisper.output_dim) == (2, 384, 576)  # 50 -> 12.5 Hz
    assert (scratch.layers, scratch.input_dim, scratch.output_dim) == (1, 256, 896)  # 25 -> 12.5 Hz
    out = Adapter(whisper)(torch.zeros(1, 8, 384), torch.tensor([8]))  # one 160 ms chunk
    assert out.embeds.shape == (1, 2, 576) and out.lengths.tolist() == [2]


@pytest.mark.parametrize("output_norm", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("seed", range(3))
def test_step_over_random_splits_equals_forward(layers, seed, output_norm):
    adapter = _adapter(layers, seed, output_norm)
    rng = random.Random(seed)
    frames = torch.randn(2, 77, 24)
    with torch.no_grad():
        full = adapter(frames, torch.tensor([77, 77]))
        cache = adapter.initial_cache(batch=2)
        outs, i = [], 0
        while i < frames.shape[1]:
            n = rng.randint(0, 9)
            out, cache = adapter.step(frames[:, i:i + n], cache)
            outs.append(out)
            i += n
    streamed = torch.cat(outs, dim=1)
    assert streamed.shape == full.embeds.shape == (2, 77 // 2 ** layers, 40)
    assert full.lengths.tolist() == [77 // 2 ** layers] * 2
    assert (streamed - full.embeds).abs().max() < 1e-5


def test_each_even_chunk_is_emitted_whole_and_nothing_looks_ahead():
    adapter = _adapter(2)
    frames = torch.randn(1, 32, 24)
    with torch.no_grad():
        cache = adapter.initial_cache()
        for i in range(0, 32, 8):
            out, cache = adapter.step(frames[:, i:i + 8], cache)
            assert out.shape[1] == 2
        changed = frames.clone()
        changed[:, 16:] = 0
        a, b = adapter(frames, torch.tensor([32])).embeds, adapter(changed, torch.tensor([32])).embeds
    assert torch.equal(a[:, :4], b[:, :4]) and not torch.allclose(a[:, 4:], b[:, 4:])


def test_output_norm_starts_at_the_llm_embedding_scale():
    adapter = _adapter(1, output_norm=True)
    embedding = torch.randn(100, 40) * 0.13
    adapter.match_embedding_scale(embedding)
    with torch.no_grad():
        out = adapter(torch.randn(3, 20, 24) * 50, torch.tensor([20, 20, 20])).embeds
    rms = out.pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, embedding.pow(2).mean().sqrt().expand_as(rms), rtol=1e-3)
    with pytest.raises(ValueError, match="no output norm"):
        _adapter(1).match_embedding_scale(embedding)


def _token_adapter(seed: int = 0, vocabulary: int = 5, layers: int = 2) -> tuple[Adapter, torch.Tensor]:
    torch.manual_seed(seed)
    adapter = Adapter(AdapterConfig(input_dim=24, output_dim=40, layers=layers, vocabulary=vocabulary)).eval()
    table = torch.randn(50, 40)  # the "LLM's" input embeddings
    adapter.readout.set_vocabulary(list(range(3, 3 + 2 * vocabulary, 2)))
    adapter.readout.attach(table)
    with torch.no_grad():
        adapter.readout.blank.normal_()
    return adapter, table


@pytest.mark.parametrize("seed", range(3))
def test_token_readout_steps_equal_forward_and_its_posteriors_are_distributions(seed):
    adapter, _ = _token_adapter(seed)
    rng = random.Random(seed)
    frames = torch.randn(1, 61, 24)
    with torch.no_grad():
        full = adapter(frames, torch.tensor([61]))
        cache, outs, i = adapter.initial_cache(), [], 0
        while i < 61:
            n = rng.randint(0, 9)
            out, cache = adapter.step(frames[:, i:i + n], cache)
            outs.append(out)
            i += n
    assert (torch.cat(outs, 1) - full.embeds).abs().max() < 1e-5
    assert full.log_probs.shape == (1, 15, 6) and torch.allclose(full.log_probs.exp().sum(-1), torch.ones(1, 15))


def test_token_readout_reads_a_held_token_once_and_a_repeated_one_twice():
    adapter, table = _token_adapter()
    readout, rows, blank = adapter.readout, table[3:13:2], adapter.readout.blank
    # classes per frame: a token at the stream start, a blank, token 2 held for three frames, a blank,
    # token 2 again, then token 4 straight after
    path = [3, 0, 2, 2, 2, 0, 2, 4]
    with torch.no_grad():
        readout.logits.weight.zero_()
        readout.logits.bias.zero_()
        x = torch.zeros(1, len(path), 24)
        embeds, _ = readout(x)  # all-uniform posteriors: nothing rises
        assert torch.allclose(embeds[0], blank.expand(len(path), -1))
        readout.logits.weight[:, :6] = torch.eye(6) * 50  # frame features are then the frames' logits
        x[0, :, :6] = torch.nn.functional.one_hot(torch.tensor(path), 6).float()
        embeds, _ = readout(x)
    expected = [blank, blank, rows[1], blank, blank, blank, rows[1], rows[3]]  # the first frame has heard nothing
    assert all(torch.allclose(e, want, atol=1e-4) for e, want in zip(embeds[0], expected))


def test_token_readout_reads_only_the_largest_rises_and_gives_the_rest_to_the_blank():
    readout = _token_adapter(vocabulary=20)[0].readout
    with torch.no_grad():
        readout.logits.weight.zero_()
        readout.logits.bias.copy_(torch.arange(21.0) / 4)  # one frame, 21 distinct rises over a silent frame
        embeds, log_probs = readout(torch.zeros(1, 1, 24), last_probs=torch.zeros(1, 21))
    probs = log_probs.exp()[0, 0, 1:]
    kept = probs[-READ_TOKENS:]  # the largest rises: the last tokens
    expected = kept @ readout.rows[-READ_TOKENS:] + (1 - kept.sum()) * readout.blank
    assert READ_TOKENS < 20 and torch.allclose(embeds[0, 0], expected, atol=1e-5)


def test_token_readout_greedy_path_merges_repeats_and_maps_to_llm_ids():
    adapter, _ = _token_adapter()
    path = torch.tensor([[0, 2, 2, 0, 2, 5, 5, 1, 0]])  # classes; 0 is the blank
    log_probs = torch.nn.functional.one_hot(path, 6).float().log()
    assert adapter.readout.greedy_ids(log_probs, torch.tensor([9])) == [[5, 5, 11, 3]]
    assert adapter.readout.greedy_ids(log_probs, torch.tensor([4])) == [[5]]
    assert adapter.readout.greedy_ids(log_probs[:, 2:], torch.tensor([7])) == [[5, 11, 3]]  # the first frame is blank
    assert adapter.readout.greedy_ids(log_probs, torch.tensor([0])) == [[]]


def test_token_readout_needs_the_llm_and_follows_loaded_vocabularies():
    torch.manual_seed(0)
    bare = Adapter(AdapterConfig(input_dim=24, output_dim=40, layers=1, vocabulary=5))
    with pytest.raises(RuntimeError, match="attach"):
        bare(torch.randn(1, 8, 24), torch.tensor([8]))
    adapter, table = _token_adapter()
    other, _ = _token_adapter(seed=1)
    other.readout.set_vocabulary([40, 41, 42, 43, 44])
    adapter.load_state_dict(other.state_dict())  # rows follow the loaded ids, not the old ones
    assert torch.equal(adapter.readout.rows, table[40:45])
    assert "adapter.readout.rows" not in {f"adapter.{k}" for k in adapter.state_dict()}
    with pytest.raises(ValueError, match="LLM's vocabulary"):
        adapter.readout.set_vocabulary([1, 2, 3, 4, 99])
    assert adapter.readout.token_ids.tolist() == [40, 41, 42, 43, 44]  # refused ids change nothing
    with pytest.raises(ValueError, match="output norm"):
        Adapter(AdapterConfig(input_dim=24, output_dim=40, vocabulary=5, output_norm=True))
