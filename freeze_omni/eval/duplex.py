"""Duplex behaviour on generated test conversations: when does the model take its turn, what does
it wrongly answer, and how fast does it stop when talked over.

Every conversation is built from held-out corpus audio with a faint noise floor between sounds
(`freeze_omni.train.turns.turn_audio`, the same construction stage 3 learns from) and replayed
through the turn engine in 160 ms chunks. Times are on the input stream's clock.
- Requests (questions, statements): the end-of-turn delay is AnswerStarted minus the end of the
  speech; no answer at all is a missed request.
- Not meant for the assistant: fillers and backchannels, requests cut off mid-sentence, noise
  bursts. Any answer is a false answer.
- Barge-in: a request, then a second request spoken while the answer plays. The stop time is the
  first AnswerPaused or Interrupted event (playback stops at either) minus the second request's
  speech onset; `barge_ins_interrupted` counts the talk-overs that then ended the answer. Only
  answers still playing at that onset count (a text-only model has no playback, so it yields no
  barge-in figures).

`sweep_answer_threshold` tunes `DialogueConfig.answer_threshold` from one pass: with answers
switched off, every chunk's state probabilities are recorded, and for each threshold the first
chunk that would have answered gives the figures. Up to that chunk a run does not depend on the
threshold, so this is what a run with that threshold would measure (barge-ins left out). Each
ignore threshold (`DialogueConfig.ignore_threshold`) takes a pass of its own, since dropping a
turn changes what is heard next.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from freeze_omni.audio.io import read_audio
from freeze_omni.dialogue.events import (AnswerAudio, AnswerFinished, AnswerPaused, AnswerStarted, Event, Interrupted,
                                         StateDecision)
from freeze_omni.llm.state_head import DialogueState, decision
from freeze_omni.dialogue.replay import replay
from freeze_omni.dialogue.turn import CHUNK_SAMPLES, DialogueConfig, TurnEngine
from freeze_omni.eval.report import percentiles
from freeze_omni.train.turns import IGNORE_KINDS, REQUEST_KINDS, TurnPlan, Utterance, turn_then_quiet

LEAD_SECONDS = 0.6
TAIL_SECONDS = 2.0
BARGE_IN_GAP_SECONDS = 1.0  # after the first request: the answer starts and plays


@dataclass(frozen=True)
class DuplexCase:
    kind: str             # "request", "ignore", "fragment", "noise", "barge-in"
    audio: np.ndarray
    mark_ms: float        # request: end of speech; barge-in: onset of the talk-over speech
    text: str


def build_cases(utterances: Sequence[Utterance], n: int, seed: int = 0) -> list[DuplexCase]:
    """n requests, n/3 each of ignorable speech, fragments and noise, and n/2 barge-ins."""
    rng = random.Random(seed)
    requests = [u for u in utterances if u.kind in REQUEST_KINDS]
    ignorable = [u for u in utterances if u.kind in IGNORE_KINDS]
    rng.shuffle(requests)
    rng.shuffle(ignorable)
    cases = []
    for i, u in enumerate(requests[:n]):
        turn = TurnPlan("request", -1, LEAD_SECONDS, u.speech_end, 0, seed + i)
        cases.append(DuplexCase("request", turn_then_quiet(turn, read_audio(u.audio), TAIL_SECONDS), turn.end * 1000,
                                u.text))
    for i, u in enumerate(ignorable[: n // 3]):
        turn = TurnPlan("ignore", -1, LEAD_SECONDS, u.speech_end, 0, seed + 1000 + i)
        cases.append(DuplexCase("ignore", turn_then_quiet(turn, read_audio(u.audio), TAIL_SECONDS), turn.end * 1000,
                                u.text))
    for i, u in enumerate(requests[n: n + n // 3]):
        cut = u.speech_start + rng.uniform(0.3, 0.7) * (u.speech_end - u.speech_start)
        turn = TurnPlan("fragment", -1, LEAD_SECONDS, cut, 0, seed + 2000 + i)
        cases.append(DuplexCase("fragment", turn_then_quiet(turn, read_audio(u.audio), TAIL_SECONDS), turn.end * 1000,
                                u.text))
    for i in range(n // 3):
        turn = TurnPlan("noise", -1, LEAD_SECONDS, rng.uniform(0.3, 1.5), 0, seed + 3000 + i)
        cases.append(DuplexCase("noise", turn_then_quiet(turn, None, TAIL_SECONDS), turn.end * 1000, "(noise)"))
    pairs = requests[n + n // 3:]
    for i in range(min(n // 2, len(pairs) // 2)):
        first, second = pairs[2 * i], pairs[2 * i + 1]
        a = turn_then_quiet(TurnPlan("request", -1, LEAD_SECONDS, first.speech_end, 0, seed + 4000 + i),
                            read_audio(first.audio), BARGE_IN_GAP_SECONDS)
        b = turn_then_quiet(TurnPlan("request", -1, 0.0, second.speech_end, 0, seed + 5000 + i),
                            read_audio(second.audio), TAIL_SECONDS)
        onset_ms = (a.size / 16000 + second.speech_start) * 1000
        cases.append(DuplexCase("barge-in", np.concatenate([a, b]), onset_ms, f"{first.text} / {second.text}"))
    return cases


def false_answer_figures(outcomes: Sequence[tuple[str, bool]]) -> dict:
    """(kind, answered) of every non-request case -> the false-answer rate, overall and per kind
    (which sounds fool the state head)."""
    by_kind = {kind: [answered for k, answered in outcomes if k == kind] for kind in sorted({k for k, _ in outcomes})}
    return {"false_answer_rate": sum(a for _, a in outcomes) / len(outcomes) if outcomes else None,
            "false_answers_by_kind": {kind: sum(v) / len(v) for kind, v in by_kind.items()}}


def evaluate_duplex(engine: TurnEngine, cases: Sequence[DuplexCase],
                    log: Callable[[str], None] = print, packet_samples: int = CHUNK_SAMPLES) -> dict:
    """Every case replayed in input packets of `packet_samples` (the figures but the barge-in stop
    time are the same for any packet size: the engine's decisions wait for whole chunks)."""
    delays, missed, early, stops, barge_ins, rows = [], 0, 0, [], 0, []
    not_meant: list[tuple[str, bool]] = []
    interrupted = 0
    for number, case in enumerate(cases, start=1):
        events: list[Event] = []
        replay(engine, case.audio, on_event=events.append, packet_samples=packet_samples)
        started = [e.t_ms for e in events if isinstance(e, AnswerStarted)]
        row = {"kind": case.kind, "text": case.text, "answers": len(started), "figure_ms": None}
        if case.kind == "request":
            if started:
                row["figure_ms"] = started[0] - case.mark_ms
                delays.append(row["figure_ms"])
                early += row["figure_ms"] < 0
            else:
                missed += 1
        elif case.kind == "barge-in":
            stopped = [e for e in events if isinstance(e, (AnswerPaused, Interrupted)) and e.t_ms >= case.mark_ms]
            playing_at_onset = started and _playing_at(events, case.mark_ms)
            if playing_at_onset and stopped:
                row["figure_ms"] = stopped[0].t_ms - case.mark_ms
                stops.append(row["figure_ms"])
                interrupted += any(isinstance(e, Interrupted) for e in stopped)
            barge_ins += bool(playing_at_onset)
        else:
            not_meant.append((case.kind, bool(started)))
        rows.append(row)
        log(f"[{number}/{len(cases)}] {case.kind}: answers {len(started)}, figure {row['figure_ms']}")
    n_requests = sum(c.kind == "request" for c in cases)
    return {"end_of_turn_delay_ms": percentiles(delays),
            **false_answer_figures(not_meant),
            "missed_request_rate": missed / n_requests if n_requests else None,
            "early_answer_rate": early / n_requests if n_requests else None,
            "barge_in_stop_ms": percentiles(stops), "barge_ins_tested": barge_ins,
            "barge_ins_stopped": len(stops), "barge_ins_interrupted": interrupted, "n": len(cases), "items": rows}


def replay_decisions(engine: TurnEngine, cases: Sequence[DuplexCase],
                     log: Callable[[str], None] = print) -> list[tuple[DuplexCase, list[StateDecision]]]:
    """Every case but the barge-ins replayed through `engine`, with the state decisions it made."""
    runs = []
    for number, case in enumerate(c for c in cases if c.kind != "barge-in"):
        events: list[Event] = []
        replay(engine, case.audio, on_event=events.append)
        decisions = [e for e in events if isinstance(e, StateDecision)]
        runs.append((case, decisions))
        log(f"[{number + 1}] {case.kind}: {len(decisions)} decisions")
    return runs


def never_answering(config: DialogueConfig, **settings) -> DialogueConfig:
    """`config` with `settings`, for an engine that only listens and decides: it never takes the
    turn, so it begins no drafts (rule 9) either, which would only cost time."""
    return replace(config, answer_threshold=2.0, draft_threshold=2.0, **settings)


def sweep_answer_threshold(engine: TurnEngine, cases: Sequence[DuplexCase], thresholds: Sequence[float],
                           log: Callable[[str], None] = print,
                           ignore_thresholds: Sequence[float] | None = None) -> list[dict]:
    """False-answer rate, missed-request rate and end-of-turn delay for each answer threshold, and
    each ignore threshold (default: the engine's own; one pass per ignore threshold)."""
    table = []
    for ignore_threshold in ignore_thresholds if ignore_thresholds is not None else [engine.config.ignore_threshold]:
        never = TurnEngine(engine.speech_input, engine.llm, engine.state_head, engine.detector,
                           config=never_answering(engine.config, ignore_threshold=ignore_threshold))
        runs = replay_decisions(never, cases, log)
        for threshold in thresholds:
            delays, missed, n_requests = [], 0, 0
            not_meant: list[tuple[str, bool]] = []
            for case, decisions in runs:
                answered = next((d.t_ms for d in decisions if decision(d.probabilities, threshold, ignore_threshold)
                                 is DialogueState.ANSWER), None)
                if case.kind == "request":
                    n_requests += 1
                    if answered is None:
                        missed += 1
                    else:
                        delays.append(answered - case.mark_ms)
                else:
                    not_meant.append((case.kind, answered is not None))
            table.append({"answer_threshold": threshold, "ignore_threshold": ignore_threshold,
                          "end_of_turn_delay_ms": percentiles(delays), **false_answer_figures(not_meant),
                          "missed_request_rate": missed / n_requests if n_requests else None})
    return table


def _playing_at(events: list[Event], t_ms: float) -> bool:
    """The latest answer started before `t_ms` had audio and was neither finished nor cut by then."""
    started = [i for i, e in enumerate(events) if isinstance(e, AnswerStarted) and e.t_ms <= t_ms]
    if not started:
        return False
    after = events[started[-1] + 1:]
    if not any(isinstance(e, AnswerAudio) and e.t_ms <= t_ms for e in after):
        return False
    ended = [e.t_ms for e in after if isinstance(e, (AnswerFinished, Interrupted, AnswerStarted))]
    return not ended or ended[0] > t_ms
