import pytest
import torch
from torch import nn

from freeze_omni.errors import FreezeOmniError
from freeze_omni.llm import FrozenLLM, KVCache, SamplingConfig
from freeze_omni.llm.chat_template import ChatTemplate


def test_forward_matches_transformers(tiny_family):
    _, hf_model, tokenizer = tiny_family
    llm = FrozenLLM.from_hf_model(hf_model, tokenizer)
    ids = torch.randint(0, hf_model.config.vocab_size, (2, 11))
    mask = torch.ones(2, 11, dtype=torch.long)
    mask[1, 7:] = 0  # right padding on the second row
    with torch.no_grad():
        expected = hf_model(input_ids=ids, attention_mask=mask).logits
        ours = llm.logits(llm(llm.embed(ids), attention_mask=mask))
    torch.testing.assert_close(ours[0], expected[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours[1, :7], expected[1, :7], atol=1e-4, rtol=1e-4)


def test_sizes_come_from_the_config(tiny_family):
    _, hf_model, tokenizer = tiny_family
    llm = FrozenLLM.from_hf_model(hf_model, tokenizer)
    cfg = hf_model.config
    assert llm.hidden_size == cfg.hidden_size
    assert llm.config.num_layers == cfg.num_hidden_layers and llm.config.vocab_size == cfg.vocab_size
    ids = torch.arange(5)[None]
    assert llm.embed(ids).shape == (1, 5, cfg.hidden_size)
    step = llm.decode_step(torch.tensor([3]), llm.new_cache())
    assert step.logits.shape == (1, cfg.vocab_size) and step.hidden.shape == (1, cfg.hidden_size)


def test_cached_prefill_and_decode_equal_full_forward(tiny_family):
    _, hf_model, tokenizer = tiny_family
    llm = FrozenLLM.from_hf_model(hf_model, tokenizer)
    ids = torch.randint(0, hf_model.config.vocab_size, (1, 14))
    with torch.no_grad():
        full = llm(llm.embed(ids))
        cache = llm.new_cache(capacity=4)  # forces the cache to grow twice
        pieces = [llm.prefill(llm.embed(ids[:, :5]), cache), llm.prefill(llm.embed(ids[:, 5:13]), cache)]
        step = llm.decode_step(ids[:, 13], cache)
    torch.testing.assert_close(torch.cat(pieces, 1), full[:, :13], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(step.hidden, full[:, 13], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(step.logits, llm.logits(full[:, 13]), atol=1e-4, rtol=1e-4)
    assert cache.length == 14


def test_a_bfloat16_llm_on_a_cpu_caches_and_attends_in_float32(tiny_family):
    """The projections stay in bfloat16; attention (much faster in float32 on a CPU) and its cache
    do not, so cached decoding still equals the whole forward pass to bfloat16 precision."""
    _, hf_model, tokenizer = tiny_family
    llm = FrozenLLM.from_hf_model(hf_model.to(torch.bfloat16), tokenizer)
    assert llm.dtype == torch.bfloat16 and llm.cache_dtype == torch.float32
    ids = torch.randint(0, hf_model.config.vocab_size, (1, 9))
    with torch.no_grad():
        full = llm(llm.embed(ids))
        cache = llm.new_cache()
        pieces = [llm.prefill(llm.embed(ids[:, :4]), cache), llm.decode_step(ids[:, 4], cache).hidden[:, None],
                  llm.prefill(llm.embed(ids[:, 5:]), cache)]
    assert cache.keys.dtype == torch.float32 and full.dtype == torch.bfloat16
    torch.testing.assert_close(torch.cat(pieces, 1).float(), full.float(), atol=2e-2, rtol=2e-2)


def test_sessions_in_one_pass_equal_each_alone(tiny_family):
    """Different cache lengths and input lengths (a decode step beside chunk prefills)."""
    _, hf_model, tokenizer = tiny_family
    llm = FrozenLLM.from_hf_model(hf_model, tokenizer)
    torch.manual_seed(0)
    histories = [torch.randint(0, hf_model.config.vocab_size, (1, n)) for n in (3, 9, 6)]
    inputs = [llm.embed(torch.randint(0, hf_model.config.vocab_size, (1, n))) for n in (2, 1, 5)]
    with torch.no_grad():
        alone, together = [], []
        for history in histories:
            for out in (alone, together):
                cache = llm.new_cache(capacity=4)
                llm.prefill(llm.embed(history), cache)
                out.append(cache)
        expected = [llm.prefill(x, cache) for x, cache in zip(inputs, alone)]
        got = llm.prefill_sessions(inputs, together)
    for a, b, x in zip(expected, got, inputs):
        assert b.shape == x.shape
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    for a, b in zip(alone, together):
        assert a.length == b.length
        torch.testing.assert_close(b.keys[:, :, :, :b.length], a.keys[:, :, :, :a.length], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError):
        llm.prefill_sessions(inputs[:2], [together[0], together[0]])


def test_cache_crop_and_state_dict_round_trip(tiny_family):
    _, hf_model, tokenizer = tiny_family
    llm = FrozenLLM.from_hf_model(hf_model, tokenizer)
    ids = torch.randint(0, hf_model.config.vocab_size, (1, 9))
    with torch.no_grad():
        cache = llm.new_cache()
        llm.prefill(llm.embed(ids[:, :6]), cache)
        saved = KVCache.from_state_dict(cache.state_dict())
        a = llm.prefill(llm.embed(ids[:, 6:]), cache)
        first = cache.clone(6)  # the positions before the crop, copied after more were written
        cache.crop(6)
        b = llm.prefill(llm.embed(ids[:, 6:]), cache)
        c = llm.prefill(llm.embed(ids[:, 6:]), saved)
        d = llm.prefill(llm.embed(ids[:, 6:]), first)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    torch.testing.assert_close(a, d)
    with pytest.raises(ValueError):
        cache.crop(100)
    with pytest.raises(ValueError):
        cache.clone(100)


def test_training_step_leaves_every_llm_weight_bit_identical(tiny_family):
    _, hf_model, tokenizer = tiny_family
    llm = FrozenLLM.from_hf_model(hf_model, tokenizer)
    adapter = nn.Linear(16, llm.hidden_size)
    system = nn.ModuleDict({"adapter": adapter, "llm": llm}).train()
    before = {k: v.clone() for k, v in llm.state_dict().items()}
    adapter_before = adapter.weight.detach().clone()
    # Every parameter is handed to the optimizer, as a careless training script would do.
    optimizer = torch.optim.AdamW(system.parameters(), lr=1e-2, weight_decay=0.1)
    targets = torch.randint(0, llm.config.vocab_size, (2, 6))
    for _ in range(3):
        hidden = llm(adapter(torch.randn(2, 6, 16)))
        loss = nn.functional.cross_entropy(llm.logits(hidden).flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        assert adapter.weight.grad is not None and adapter.weight.grad.abs().sum() > 0
        optimizer.step()
    assert not llm.training
    assert not torch.equal(adapter.weight, adapter_before)
    for name, value in llm.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_chat_template_pieces(tiny_family):
    family, hf_model, tokenizer = tiny_family
    template = ChatTemplate.from_tokenizer(tokenizer)
    decode = tokenizer.decode
    if family == "llama":
        assert decode(template.system_prefix) == "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        assert decode(template.user_start) == "<|start_header_id|>user<|end_header_id|>\n\n"
        assert decode(template.user_end_assistant_start) == "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        assert decode(template.assistant_end) == "<|eot_id|>"
    else:
        assert decode(template.system_prefix) == "<|im_start|>system\n"
        assert decode(template.system_suffix) == "<|im_end|>\n"
        assert decode(template.user_start) == "<|im_start|>user\n"
        assert decode(template.user_end_assistant_start) == "<|im_end|>\n<|im_start|>assistant\n"
        assert decode(template.assistant_end) == "<|im_end|>\n"
    # The pieces put together say what the template itself says.
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert decode(template.system(tokenizer, "be brief") + template.user_turn(tokenizer, "hello world")) == rendered


def test_template_without_chat_support_is_a_clear_error(tiny_family):
    _, _, tokenizer = tiny_family
    tokenizer.chat_template = None
    with pytest.raises(FreezeOmniError, match="chat template"):
        ChatTemplate.from_tokenizer(tokenizer)


def test_generate_stops_at_the_stop_token(tiny_family):
    _, hf_model, tokenizer = tiny_family
    llm = FrozenLLM.from_hf_model(hf_model, tokenizer)
    stop = min(llm.stop_ids)
    with torch.no_grad():
        llm.model.lm_head.weight.zero_()  # every logit equal: greedy picks id 0 forever
        cache = llm.new_cache()
        tokens = [t for t, _ in llm.generate([1, 2, 3], cache, max_new_tokens=7)]
    assert tokens == [0] * 7 and cache.length == 3 + 7
    with torch.no_grad():
        llm.model.lm_head.bias = nn.Parameter(torch.zeros(llm.config.vocab_size).index_fill_(0, torch.tensor(stop), 50.0))
        tokens = [t for t, _ in llm.generate([1, 2, 3], llm.new_cache(), SamplingConfig(temperature=0.7, top_k=3))]
    assert tokens == [stop]
