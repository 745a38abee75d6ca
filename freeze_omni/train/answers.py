"""Self-distillation targets: the frozen LLM's own greedy answers to the typed requests.

Stage 3 teaches the speech input to make the LLM answer a spoken request exactly as it answers
the same request typed, so its intelligence is kept rather than replaced by someone else's
answers. Answers are generated once per (LLM, system prompt, length limit) and kept in a JSONL
file that a rerun extends, so an interrupted run loses at most one batch.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from freeze_omni.llm import FrozenLLM


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
    """Greedy continuations of many prompts. Prompts of equal length share one batched cache
    (a cache keeps one length for all its rows), so no padding can change any answer."""
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


class AnswerBook:
    """Typed-request answers of one LLM under one system prompt and limit, cached in a JSONL file."""

    def __init__(self, llm: FrozenLLM, system_prompt: str, max_tokens: int, folder: Path) -> None:
        self.llm, self.system_prompt, self.max_tokens = llm, system_prompt, max_tokens
        key = hashlib.sha1(f"{llm.name}|{system_prompt}|{max_tokens}".encode()).hexdigest()[:12]
        self.path = folder / f"answers-{key}.jsonl"
        self.answers: dict[str, Answer] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    self.answers[record["text"]] = Answer(record["answer_ids"], record["finished"])

    def fill(self, texts: Sequence[str], batch_size: int = 32, log=print) -> None:
        """Answer every text not answered yet, appending each batch to the file as it is done."""
        missing = sorted(set(texts) - set(self.answers), key=lambda t: (len(t), t))
        if not missing:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        done = 0
        step = batch_size * 8  # a few length groups per write
        for start in range(0, len(missing), step):
            group = missing[start:start + step]
            prompts = [typed_request(self.llm, self.system_prompt, t) for t in group]
            answers = greedy_answers(self.llm, prompts, self.max_tokens, batch_size)
            with self.path.open("a") as f:
                for text, answer in zip(group, answers):
                    f.write(json.dumps({"text": text, "answer_ids": answer.token_ids, "finished": answer.finished}) + "\n")
                    self.answers[text] = answer
            done += len(group)
            log(f"answers: {done}/{len(missing)} typed requests answered -> {self.path}")

    def __getitem__(self, text: str) -> Answer:
        return self.answers[text]

    def __contains__(self, text: str) -> bool:
        return text in self.answers
