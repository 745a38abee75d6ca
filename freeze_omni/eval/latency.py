"""Latency of a spoken turn on this machine, measured in wall-clock time like a live microphone.

Audio goes in one 160 ms chunk at a time, each handed over when its last sample would have been
spoken; between chunks the engine does answer work until the next chunk is due. Every figure is
wall time from the moment the user stopped speaking (the utterance's `speech_end`):
state_decision (the chunk whose state is ANSWER has been heard and decided), first_text_token
(the first answer token exists), first_phrase (its text goes to the speaker), first_packet (the
first PCM packet exists). The published breakdown also separates the speech decoder's first
token: first_speech_token, measured when the speaker reports it (`DecoderSpeaker.on_first_token`;
null for a text-only speaker). An answer started before the end of speech gives negative figures.
Each case is a request as `eval duplex` builds one: a quiet lead, the utterance up to its end of
speech, and a quiet tail long enough to wait for the answer. Quiet is a faint noise floor, as in
training: a microphone never gives digital zeros, and the state head was never taught them.
A draft (turn.py rule 9) may make the first phrase and packet before the decision; they count
when the answer shows and plays them, and the speech token when it was made but not before the
first phrase is shown (the last report wins: a dropped draft's token was not the answer's).
`ready_at_decision` says in how many turns each stage already existed when the head decided.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from freeze_omni.audio.io import read_audio
from freeze_omni.dialogue.events import AnswerAudio, AnswerText, StateDecision, TurnIgnored
from freeze_omni.dialogue.turn import CHUNK_SAMPLES, TurnEngine
from freeze_omni.eval.report import percentiles
from freeze_omni.llm.state_head import DialogueState
from freeze_omni.train.turns import REQUEST_KINDS, TurnPlan, Utterance, turn_then_quiet

CHUNK_S = CHUNK_SAMPLES / 16000
LEAD_SECONDS = 0.5
WAIT_SECONDS = 5.0  # quiet after the end of speech in which the answer must come
STAGES = ("state_decision_ms", "first_text_token_ms", "first_phrase_ms", "first_packet_ms")
SPEECH_TOKEN = "first_speech_token_ms"  # only when the speaker reports its first codec token


@dataclass(frozen=True)
class LatencyCase:
    audio: np.ndarray  # the whole input, the quiet after the request included
    speech_end_s: float  # where the user stops speaking, in seconds from the start of `audio`


def build_cases(utterances: Sequence[Utterance], n: int, seed: int = 0) -> list[LatencyCase]:
    """The first `n` requests, each with a quiet lead and `WAIT_SECONDS` of quiet after it."""
    cases = []
    for i, u in enumerate([u for u in utterances if u.kind in REQUEST_KINDS][:n]):
        turn = TurnPlan("request", -1, LEAD_SECONDS, u.speech_end, 0, seed + i)
        cases.append(LatencyCase(turn_then_quiet(turn, read_audio(u.audio), WAIT_SECONDS), turn.end))
    return cases


def measure_turn(engine: TurnEngine, case: LatencyCase, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> dict[str, float | None]:
    """One turn, paced in real time; figures in ms after the end of speech (None: never reached)."""
    session = engine.new_session("latency")
    n_chunks = -(-case.audio.size // CHUNK_SAMPLES)
    audio = np.zeros(n_chunks * CHUNK_SAMPLES, np.float32)
    audio[: case.audio.size] = case.audio
    marks: dict[str, float] = {}
    speech_token: list[float] = []
    hooked = hasattr(engine.speaker, "on_first_token")
    if hooked:
        engine.speaker.on_first_token = lambda phrase: phrase.index == 0 and speech_token.append(clock())

    def note(events: list) -> None:
        for event in events:
            if isinstance(event, StateDecision) and event.state == DialogueState.ANSWER:
                marks.setdefault("state_decision_ms", clock())
            elif isinstance(event, TurnIgnored):
                marks.clear()
            elif isinstance(event, AnswerText):
                marks.setdefault("first_phrase_ms", clock())
            elif isinstance(event, AnswerAudio):
                marks.setdefault("first_packet_ms", clock())
        if session.answer is not None and session.answer.tokens:
            marks.setdefault("first_text_token_ms", clock())

    try:
        start = clock()
        for i in range(n_chunks):
            due = start + (i + 1) * CHUNK_S
            sleep(max(0.0, due - clock()))
            note(engine.accept_audio(session, audio[i * CHUNK_SAMPLES:(i + 1) * CHUNK_SAMPLES]))
            while engine.has_answer_work(session) and "first_packet_ms" not in marks and clock() < due + CHUNK_S:
                note(engine.step_answer(session, 1))
            if "first_packet_ms" in marks or (marks and session.answer is None):
                break
    finally:
        if hooked:
            engine.speaker.on_first_token = None
    if speech_token and "first_phrase_ms" in marks:
        marks[SPEECH_TOKEN] = max(speech_token[-1], marks["first_phrase_ms"])
    end = start + case.speech_end_s
    return {stage: (marks[stage] - end) * 1000 if stage in marks else None for stage in (*STAGES, SPEECH_TOKEN)}


def evaluate_latency(engine: TurnEngine, cases: Sequence[LatencyCase], log: Callable[[str], None] = print) -> dict:
    turns = []
    for number, case in enumerate(cases, start=1):
        figures = measure_turn(engine, case)
        turns.append(figures)
        log(f"[{number}/{len(cases)}] " + ", ".join(f"{k} {v:.0f}" if v is not None else f"{k} -" for k, v in
                                                   figures.items()))
    result = {stage: percentiles([t[stage] for t in turns if t[stage] is not None]) for stage in (*STAGES, SPEECH_TOKEN)}
    result["answered"] = sum(t["first_text_token_ms"] is not None for t in turns)
    result["ready_at_decision"] = ready_at_decision(turns)
    result["n"] = len(turns)
    result["turns"] = turns
    return result


def ready_at_decision(turns: Sequence[dict[str, float | None]], within_ms: float = 1.0) -> dict[str, int]:
    """In how many turns each later stage already existed when the head decided, i.e. a draft
    (turn.py rule 9) had got that far in the silence before the decision."""
    decided = [t for t in turns if t["state_decision_ms"] is not None]
    return {stage: sum(t[stage] is not None and t[stage] - t["state_decision_ms"] < within_ms for t in decided)
            for stage in STAGES[1:]}
