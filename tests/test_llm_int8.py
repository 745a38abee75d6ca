"""Weight-only int8 LLM matmuls: close to the unrounded model, and streaming still equals whole."""

import pytest
import torch
from torch import nn

from conftest import tiny_hf_model
from freeze_omni.llm import FrozenLLM
from freeze_omni.llm.int8 import Int8Linear

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_linear_rounds_only_the_weights(dtype):
    torch.manual_seed(0)
    linear = nn.Linear(64, 48).to(dtype)
    x = torch.randn(2, 5, 64).to(dtype)
    with torch.no_grad():
        expected, got = linear(x).float(), Int8Linear(linear)(x)
    assert got.dtype == dtype and got.shape == (2, 5, 48)
    assert (got.float() - expected).norm() / expected.norm() < 0.02


def test_int8_llm_stays_close_and_streaming_still_equals_whole():
    hf_model, tokenizer = tiny_hf_model("llama")
    reference = FrozenLLM.from_hf_model(hf_model, tokenizer)
    llm = FrozenLLM.from_hf_model(hf_model, tokenizer).quantize_int8()
    assert isinstance(llm.model.blocks[0].mlp.down, Int8Linear) and isinstance(llm.model.lm_head, Int8Linear)
    embeds = reference.embed(torch.randint(0, hf_model.config.vocab_size, (1, 12)))
    with torch.no_grad():
        whole = llm.prefill(embeds, llm.new_cache())
        cache = llm.new_cache()
        streamed = torch.cat([llm.prefill(embeds[:, :5], cache), llm.prefill(embeds[:, 5:], cache)], dim=1)
        unrounded = reference.prefill(embeds, reference.new_cache())
    torch.testing.assert_close(streamed, whole, atol=1e-4, rtol=1e-4)
    cosine = nn.functional.cosine_similarity(whole, unrounded, dim=-1)
    assert cosine.min() > 0.99
    assert not torch.equal(whole, unrounded)  # the weights really are rounded
