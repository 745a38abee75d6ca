"""Speed of the two operations a conversation asks of the frozen LLM, measured on this machine.

Prefill: `chunk_positions` input embeddings appended after `context` positions (what one speech
chunk costs while the user talks). Decode: one token at a time after the same context (how fast
an answer is written).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from freeze_omni.llm.backbone import FrozenLLM


@dataclass
class LLMSpeed:
    prefill_ms_per_chunk: float     # median
    prefill_ms_p95: float
    decode_tokens_per_s: float      # from the median step time
    decode_ms_per_token_p95: float
    context: int
    chunk_positions: int

    def as_dict(self) -> dict:
        return asdict(self)


def measure_llm_speed(llm: FrozenLLM, context: int = 300, chunk_positions: int = 8,
                      decode_tokens: int = 32, repeats: int = 20, warmup: int = 3) -> LLMSpeed:
    generator = torch.Generator().manual_seed(0)
    vocab = llm.config.vocab_size
    with torch.inference_mode():
        cache = llm.new_cache(capacity=context + max(chunk_positions, decode_tokens) + 1)
        llm.prefill(llm.embed(torch.randint(0, vocab, (1, context), generator=generator)), cache)
        chunk = llm.embed(torch.randint(0, vocab, (1, chunk_positions), generator=generator))
        prefill = []
        for i in range(warmup + repeats):
            start = time.perf_counter()
            llm.prefill(chunk, cache)
            if i >= warmup:
                prefill.append((time.perf_counter() - start) * 1000)
            cache.crop(context)
        token = torch.randint(0, vocab, (1,), generator=generator)
        steps = []
        for i in range(warmup + decode_tokens):
            start = time.perf_counter()
            token = llm.decode_step(token, cache).logits.argmax(-1)
            if i >= warmup:
                steps.append((time.perf_counter() - start) * 1000)
    return LLMSpeed(
        prefill_ms_per_chunk=_quantile(prefill, 0.5),
        prefill_ms_p95=_quantile(prefill, 0.95),
        decode_tokens_per_s=1000.0 / _quantile(steps, 0.5),
        decode_ms_per_token_p95=_quantile(steps, 0.95),
        context=context,
        chunk_positions=chunk_positions,
    )


def _quantile(values: list[float], q: float) -> float:
    return float(torch.quantile(torch.tensor(values), q))
