"""Duplex evaluation: generated cases, and figures that follow the state head's behaviour."""

from dataclasses import replace

import pytest
import torch

from dialogue_support import ANSWER, LISTEN, RecordingSpeaker, forced_head, make_engine
from freeze_omni.audio.io import write_wav
from freeze_omni.dialogue import TurnEngine, TurnIgnored
from freeze_omni.dialogue.replay import replay
from freeze_omni.eval.duplex import build_cases, evaluate_duplex, false_answer_figures, sweep_answer_threshold
from freeze_omni.llm import SamplingConfig
from freeze_omni.train.turns import Utterance

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def utterances(speech, tmp_path_factory):
    folder = tmp_path_factory.mktemp("duplex")
    items = []
    for i in range(10):
        clip = speech["q1" if i % 2 else "q2"]
        write_wav(folder / f"{i}.wav", clip)
        kind = "filler" if i == 9 else "question"
        items.append(Utterance(str(folder / f"{i}.wav"), f"text {i}", kind, 0.05, clip.size / 16000 - 0.05))
    return items


def test_cases_cover_every_kind_and_are_reproducible(utterances):
    cases = build_cases(utterances, n=3, seed=1)
    kinds = [c.kind for c in cases]
    assert kinds.count("request") == 3 and {"ignore", "fragment", "noise"} <= set(kinds)
    assert [c.audio.tolist() for c in cases] == [c.audio.tolist() for c in build_cases(utterances, n=3, seed=1)]
    for case in cases:
        assert case.audio.size % 2560 == 0 and case.audio.size / 16 > case.mark_ms


def engine_for(llm, speech_input, detector, state, audio=False):
    """Answers of 3 s of audio: still playing when the talk-over starts 1 s after the request."""
    return make_engine(llm, speech_input, detector, forced_head(llm, state), RecordingSpeaker(audio=audio),
                       max_answer_tokens=30, sampling=SamplingConfig())


def test_a_head_that_always_answers_answers_everything(llm, speech_input, detector, utterances):
    cases = build_cases(utterances, n=3, seed=1)
    result = evaluate_duplex(engine_for(llm, speech_input, detector, ANSWER, audio=True), cases, log=lambda _: None)
    assert result["missed_request_rate"] == 0.0
    assert result["false_answer_rate"] > 0  # at least the filler and the fragment open turns
    assert set(result["false_answers_by_kind"]) == {"ignore", "fragment", "noise"}
    assert result["end_of_turn_delay_ms"]["p50"] < 0  # it answers before the user has finished
    assert result["barge_ins_tested"] == 1 and result["barge_ins_stopped"] == 1
    assert result["barge_in_stop_ms"]["p50"] >= 0
    assert result["n"] == len(cases) == len(result["items"])


def test_short_packets_change_only_the_barge_in_stop_which_comes_sooner(llm, speech_input, detector, utterances):
    cases = build_cases(utterances, n=3, seed=1)
    engine = engine_for(llm, speech_input, detector, ANSWER, audio=True)
    chunks = evaluate_duplex(engine, cases, log=lambda _: None)
    packets = evaluate_duplex(engine, cases, log=lambda _: None, packet_samples=512)
    def without_stops(result):
        items = [{**row, "figure_ms": None} if row["kind"] == "barge-in" else row for row in result["items"]]
        return {**result, "barge_in_stop_ms": None, "items": items}

    assert without_stops(packets) == without_stops(chunks)
    assert packets["barge_in_stop_ms"]["p50"] < chunks["barge_in_stop_ms"]["p50"]


def test_a_head_that_never_answers_misses_every_request(llm, speech_input, detector, utterances):
    cases = [c for c in build_cases(utterances, n=3, seed=1) if c.kind != "barge-in"]
    result = evaluate_duplex(engine_for(llm, speech_input, detector, LISTEN), cases, log=lambda _: None)
    assert result["missed_request_rate"] == 1.0 and result["false_answer_rate"] == 0.0
    assert result["end_of_turn_delay_ms"] == {"p50": None, "p95": None}


def test_the_threshold_sweep_agrees_with_real_runs(llm, speech_input, detector, utterances):
    """A head that says ANSWER with p = 0.58 on every chunk: below the threshold it never answers."""
    cases = [c for c in build_cases(utterances, n=3, seed=1) if c.kind != "barge-in"]
    head = forced_head(llm, LISTEN)
    with torch.no_grad():
        head.proj.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
    engine = make_engine(llm, speech_input, detector, head, max_answer_tokens=3, sampling=SamplingConfig())
    low, high = sweep_answer_threshold(engine, cases, [0.5, 0.6], log=lambda _: None)
    real = evaluate_duplex(engine_for_threshold(engine, 0.5), cases, log=lambda _: None)
    for key in ("false_answer_rate", "false_answers_by_kind", "missed_request_rate", "end_of_turn_delay_ms"):
        assert low[key] == real[key], key
    assert low["missed_request_rate"] == 0.0 and low["false_answer_rate"] > 0
    assert high["missed_request_rate"] == 1.0 and high["false_answer_rate"] == 0.0
    assert set(high["false_answers_by_kind"].values()) == {0.0}


def engine_for_threshold(engine, threshold):
    return TurnEngine(engine.speech_input, engine.llm, engine.state_head, engine.detector, engine.speaker,
                      replace(engine.config, answer_threshold=threshold))


def test_false_answers_are_counted_per_kind():
    figures = false_answer_figures([("noise", True), ("noise", False), ("ignore", False), ("fragment", True)])
    assert figures == {"false_answer_rate": 0.5, "false_answers_by_kind": {"fragment": 1.0, "ignore": 0.0, "noise": 0.5}}
    assert false_answer_figures([]) == {"false_answer_rate": None, "false_answers_by_kind": {}}


def test_an_ignore_threshold_keeps_a_turn_an_unsure_ignore_would_drop(llm, speech_input, detector, utterances):
    """A head that says IGNORE with p = 0.58 on every chunk drops every turn at once, unless
    dropping needs p >= 0.6; the sweep's pass per ignore threshold agrees with real runs."""
    cases = [c for c in build_cases(utterances, n=3, seed=1) if c.kind != "barge-in"]
    head = forced_head(llm, LISTEN)
    with torch.no_grad():
        head.proj.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    engine = make_engine(llm, speech_input, detector, head, max_answer_tokens=3, sampling=SamplingConfig())
    rows = sweep_answer_threshold(engine, cases, [0.5], log=lambda _: None, ignore_thresholds=[0.5, 0.6])
    assert [r["ignore_threshold"] for r in rows] == [0.5, 0.6]
    for row in rows:
        real = evaluate_duplex(TurnEngine(engine.speech_input, engine.llm, head, engine.detector, engine.speaker,
                                          replace(engine.config, ignore_threshold=row["ignore_threshold"])),
                               cases, log=lambda _: None)
        assert row["missed_request_rate"] == real["missed_request_rate"] == 1.0  # IGNORE or LISTEN: never ANSWER
    ignored = {}
    for threshold in (0.5, 0.6):
        config = replace(engine.config, ignore_threshold=threshold)
        events = []
        replay(TurnEngine(engine.speech_input, engine.llm, head, engine.detector, config=config), cases[0].audio,
               on_event=events.append)
        ignored[threshold] = [e.reason for e in events if isinstance(e, TurnIgnored)]
    assert ignored[0.5] and set(ignored[0.5]) == {"state"}
    assert ignored[0.6] and set(ignored[0.6]) == {"timeout"}  # kept until the end timeout
