"""Self-distillation targets: the frozen LLM's own greedy answers to the typed requests.

Stage 3 teaches the speech input to make the LLM answer a spoken request exactly as it answers
the same request typed, so its intelligence is kept rather than replaced by someone else's
answers. Answers are generated once per (LLM, system prompt, length limit) and kept in a JSONL
file that a rerun extends, so an interrupted run loses at most one batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from freeze_omni.llm import FrozenLLM
from freeze_omni.llm.greedy import Answer, greedy_answers, typed_request


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
