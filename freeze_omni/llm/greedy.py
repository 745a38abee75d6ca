"""Greedy answers of many typed requests at once: the text baseline of spoken QA and the targets
of self-distillation. Prompts of equal length share one batched KV cache (a cache keeps one
length for all its rows), so no padding can change any answer: each equals a one-by-one run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from freeze_omni.llm.backbone import FrozenLLM


@dataclass(frozen=True)
class Answer:
    token_ids: list[int]  # the answer's tokens, without the stop token
    finished: bool        # True when the LLM stopped by itself within the limit


def typed_request(llm: FrozenLLM, system_prompt: str, text: str) -> list[int]:
    """[system | user turn with the text | assistant start]: the text baseline of spoken QA."""
    return llm.template.system(llm.tokenizer, system_prompt) + llm.template.user_turn(llm.tokenizer, text)


@torch.no_grad()
def greedy_answers(llm: FrozenLLM, prompts: Sequence[Sequence[int]], max_tokens: int,
                   batch_size: int = 32) -> list[Answer]:
    """Greedy continuations of many prompts, batched by prompt length."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, prompt in enumerate(prompts):
        by_length[len(prompt)].append(index)
    answers: list[Answer | None] = [None] * len(prompts)
    for length, indices in by_length.items():
        for start in range(0, len(indices), batch_size):
            group = indices[start:start + batch_size]
            for index, answer in zip(group, _greedy_batch(llm, [prompts[i] for i in group], max_tokens)):
                answers[index] = answer
    return answers  # type: ignore[return-value]


def _greedy_batch(llm: FrozenLLM, prompts: list[Sequence[int]], max_tokens: int) -> list[Answer]:
    cache = llm.new_cache(batch=len(prompts), capacity=len(prompts[0]) + max_tokens)
    hidden = llm.prefill(llm.embed(torch.tensor(prompts, dtype=torch.long)), cache)[:, -1]
    logits = llm.logits(hidden)
    tokens: list[list[int]] = [[] for _ in prompts]
    finished = [False] * len(prompts)
    for _ in range(max_tokens):
        next_ids = logits.argmax(-1)
        for row, token in enumerate(next_ids.tolist()):
            if finished[row]:
                continue
            if token in llm.stop_ids:
                finished[row] = True
            else:
                tokens[row].append(token)
        if all(finished):
            break
        logits = llm.decode_step(next_ids, cache).logits
    return [Answer(t, f) for t, f in zip(tokens, finished)]
