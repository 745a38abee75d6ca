import random

import pytest
import torch

from freeze_omni.adapter import Adapter, AdapterConfig
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
