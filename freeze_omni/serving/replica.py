"""One copy of the model weights that runs work items of any session, keeping nothing between them.

A `Replica` wraps a `TurnEngine` (which holds only models and settings) and runs a batch of
items, each on the session it names. Items of one batch come from different sessions (input
chunks and answer tokens mixed, or speech packets; `scheduler.py` rule 3), and the engine runs
their LLM work in shared forward passes (`dialogue/batching.py`): an input chunk of one user and
the next answer token of another cost one pass over the weights.

Each item is protected by a checkpoint: if it raises, the session is rewound (`recovery.py`)
and the error is returned for that item alone; the other items of the batch still run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from freeze_omni.dialogue.batching import Work
from freeze_omni.dialogue.events import Event
from freeze_omni.dialogue.session import Session
from freeze_omni.dialogue.turn import TurnEngine
from freeze_omni.serving.recovery import Checkpoint, rewind
from freeze_omni.serving.scheduler import Kind, WorkItem


@dataclass
class Result:
    item: WorkItem
    events: list[Event] = field(default_factory=list)
    error: BaseException | None = None
    answer: Kind | None = None  # the session's next unit of answer work
    finished: float = 0.0  # clock time the item finished
    due: float = math.inf  # clock time the answer's queued audio runs out (inf: no answer work)


def answer_work(engine: TurnEngine, session: Session) -> Kind | None:
    """Which answer unit `step_answer` would do next."""
    unit = engine.next_answer_unit(session)
    return None if unit is None else Kind.TOKEN if unit == "token" else Kind.PACKET


class Replica:
    def __init__(self, engine: TurnEngine, name: str = "replica-0") -> None:
        self.engine = engine
        self.name = name

    def new_session(self, session_id: str, system_prompt: str | None = None, seed: int = 0) -> Session:
        return self.engine.new_session(session_id, seed=seed, system_prompt=system_prompt)

    def _work(self, item: WorkItem, session: Session) -> Work[list[Event]]:
        if item.kind is Kind.ENCODE:
            return self.engine.audio_work(session, np.asarray(item.pcm, np.float32))
        return self.engine.answer_work(session)

    def run(self, batch: list[tuple[WorkItem, Session]]) -> list[Result]:
        if not batch:
            return []
        checkpoints = [Checkpoint.take(session) for _, session in batch]
        outcomes = self.engine.run_batch([(session, self._work(item, session)) for item, session in batch])
        finished, results = time.monotonic(), []
        for (item, session), checkpoint, outcome in zip(batch, checkpoints, outcomes):
            if isinstance(outcome, Exception):  # any failure: the session goes back to a consistent state
                rewind(session, checkpoint, self.engine.detector)
                results.append(Result(item, error=outcome, finished=finished))
            else:
                slack = self.engine.audio_slack_ms(session)
                due = math.inf if slack is None else finished + slack / 1000.0
                results.append(Result(item, outcome, answer=answer_work(self.engine, session), finished=finished,
                                      due=due))
        return results


def load_replicas(model_dir, count: int, temperature: float = 0.0,
                  draft_threshold: float | None = None) -> list[Replica]:
    """`count` replicas of the model bundle in `model_dir`, each with its own copy of the weights
    (loaded once, copied in memory). The VAD runtime is shared: it keeps no state between calls.
    `temperature` 0 answers greedily (as `chat` does); above 0 each session samples with its seed.
    `draft_threshold` (turn.py rule 9; above 1: no drafts) defaults to the engine's."""
    import copy

    from freeze_omni.audio.vad import SpeechDetector
    from freeze_omni.bundle import load_model
    from freeze_omni.llm import SamplingConfig

    model = load_model(model_dir)
    config = model.spec.dialogue_config(sampling=SamplingConfig(temperature=temperature),
                                        draft_threshold=draft_threshold)
    detector = SpeechDetector()
    replicas = []
    for i in range(count):
        parts = (model.speech_input, model.llm, model.state_head) if i == 0 else copy.deepcopy(
            (model.speech_input, model.llm, model.state_head))
        # one speaker for all: it keeps no per-call state and its ONNX sessions are thread-safe
        replicas.append(Replica(TurnEngine(*parts, detector, model.speaker, config=config), f"replica-{i}"))
    return replicas
