"""Engine work as generators that ask for LLM passes, so that several sessions share one pass.

Each piece of turn-engine work (a 160 ms input chunk, a unit of answer work) is a generator:
when it needs the LLM it yields an `LLMCall` and is sent back an `LLMOutput`. `run_together`
advances many of them side by side and puts the calls they make at the same point into one
`FrozenLLM.prefill_sessions` pass: on a CPU one pass over a few sessions costs little more than
one. A session alone takes the same code path, so batching cannot change what a session gets.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from freeze_omni.llm import FrozenLLM, KVCache

T = TypeVar("T")


@dataclass(frozen=True)
class LLMCall:
    embeds: torch.Tensor  # [1, t, hidden], appended to `kv`
    kv: KVCache
    logits: bool = False  # also wanted: the next-token logits after the last position


@dataclass(frozen=True)
class LLMOutput:
    hidden: torch.Tensor  # [1, t, hidden] final-norm hidden states
    logits: torch.Tensor | None  # [1, vocab] when asked for

    @property
    def last(self) -> torch.Tensor:
        return self.hidden[:, -1]


Work = Generator[LLMCall, LLMOutput, T]


def run_together(llm: FrozenLLM, works: Sequence[Work[T]]) -> list[T | Exception]:
    """Run every piece of work to its end; each result is its return value or the exception it
    raised. A failing piece stops alone; a failing pass fails the pieces that were in it."""
    results: list[T | Exception | None] = [None] * len(works)
    waiting: dict[int, LLMCall] = {}

    def advance(i: int, output: LLMOutput | None) -> None:
        try:
            waiting[i] = works[i].send(output)
        except StopIteration as done:
            results[i] = done.value
        except Exception as error:  # this piece's own failure: the others go on
            results[i] = error

    for i in range(len(works)):
        advance(i, None)
    while waiting:
        batch, calls = list(waiting), list(waiting.values())
        waiting.clear()
        try:
            outputs = _forward(llm, calls)
        except Exception as error:
            for i in batch:
                works[i].close()
                results[i] = error
            continue
        for i, output in zip(batch, outputs):
            advance(i, output)
    return results


def run_alone(llm: FrozenLLM, work: Work[T]) -> T:
    (result,) = run_together(llm, [work])
    if isinstance(result, Exception):
        raise result
    return result


def _forward(llm: FrozenLLM, calls: list[LLMCall]) -> list[LLMOutput]:
    hidden = llm.prefill_sessions([c.embeds for c in calls], [c.kv for c in calls])
    wanted = [i for i, c in enumerate(calls) if c.logits]
    logits: list[torch.Tensor | None] = [None] * len(calls)
    if wanted:
        rows = llm.logits(torch.cat([hidden[i][:, -1] for i in wanted]))
        for i, row in zip(wanted, rows.split(1)):
            logits[i] = row
    return [LLMOutput(h, lg) for h, lg in zip(hidden, logits)]
