"""Latency of a spoken turn on this machine, measured in wall-clock time like a live microphone.

Audio goes in one 160 ms chunk at a time, each handed over when its last sample would have been
spoken; between chunks the engine does answer work until the next chunk is due. Every figure is
wall time from the moment the user stopped speaking (the utterance's `speech_end`):
state_decision (the chunk whose state is ANSWER has been heard and decided), first_text_token
(the first answer token exists), first_phrase (its text goes to the speaker), first_packet (the
first PCM packet exists). The published breakdown also separates the speech decoder's first
token: first_speech_token, measured when the speaker reports it (`DecoderSpeaker.on_first_token`;
null for a text-only speaker). An answer started before the end of speech gives negative figures.
A draft (turn.py rule 9) may make the first phrase and packet before the decision; they count
when the answer shows and plays them, and the speech token when it was made but not before the
first phrase is shown (the last report wins: a dropped draft's token was not the answer's).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from freeze_omni.dialogue.events import AnswerAudio, AnswerText, StateDecision, TurnIgnored
from freeze_omni.dialogue.turn import CHUNK_SAMPLES, TurnEngine
from freeze_omni.eval.report import percentiles
from freeze_omni.llm.state_head import DialogueState

CHUNK_S = CHUNK_SAMPLES / 16000
STAGES = ("state_decision_ms", "first_text_token_ms", "first_phrase_ms", "first_packet_ms")
SPEECH_TOKEN = "first_speech_token_ms"  # only when the speaker reports its first codec token


@dataclass(frozen=True)
class LatencyCase:
    audio: np.ndarray
    speech_end_s: float  # where the user stops speaking, in seconds from the start of `audio`


def measure_turn(engine: TurnEngine, case: LatencyCase, max_wait_s: float = 5.0,
                 clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> dict[str, float | None]:
    """One turn, paced in real time; figures in ms after the end of speech (None: never reached)."""
    session = engine.new_session("latency")
    n_chunks = -(-case.audio.size // CHUNK_SAMPLES) + int(max_wait_s / CHUNK_S)
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
    result["n"] = len(turns)
    result["turns"] = turns
    return result
