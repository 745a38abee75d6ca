"""Latency measurement: paced input, stage marks in order, figures relative to the end of speech."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from dialogue_support import ANSWER, LISTEN, RecordingSpeaker, conversation, forced_head, make_engine, silence
from freeze_omni.audio.io import read_audio
from freeze_omni.dialogue.turn import CHUNK_SAMPLES
from freeze_omni.eval.latency import (
    LEAD_SECONDS, SPEECH_TOKEN, STAGES, WAIT_SECONDS, LatencyCase, build_cases, evaluate_latency, measure_turn,
    ready_at_decision,
)
from freeze_omni.eval.report import write_percentile_chart
from freeze_omni.llm import SamplingConfig
from freeze_omni.llm.state_head import StateHead
from freeze_omni.paths import EXAMPLES_DIR
from freeze_omni.train.turns import Utterance

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeClock:
    """Time moves only when the measurement sleeps: compute is free, so figures are exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def engine_with(llm, speech_input, detector, state):
    return make_engine(llm, speech_input, detector, forced_head(llm, state), RecordingSpeaker(audio=True),
                       max_answer_tokens=8, sampling=SamplingConfig())


def test_stages_come_in_order_after_the_end_of_speech(llm, speech_input, detector, speech):
    audio = conversation(silence(0.3), speech["q1"], silence(0.3))
    clock = FakeClock()
    # the forced head answers as soon as speech is heard: call the end of speech the first chunk
    figures = measure_turn(engine_with(llm, speech_input, detector, ANSWER), LatencyCase(audio, 0.16),
                           clock=clock, sleep=clock.sleep)
    values = [figures[s] for s in STAGES]
    assert all(v is not None for v in values) and values == sorted(values) and values[0] >= 0
    assert values[0] == pytest.approx(round(values[0] / 160) * 160)  # decided on a chunk boundary


def test_no_answer_gives_no_figures(llm, speech_input, detector, speech, tmp_path):
    audio = conversation(silence(0.3), speech["q1"], silence(0.3))
    engine = engine_with(llm, speech_input, detector, LISTEN)
    clock = FakeClock()
    figures = measure_turn(engine, LatencyCase(audio, 2.0), clock=clock, sleep=clock.sleep)
    assert figures == {stage: None for stage in (*STAGES, SPEECH_TOKEN)}
    result = evaluate_latency(engine_with(llm, speech_input, detector, ANSWER), [LatencyCase(audio, 0.0)],
                              log=lambda _: None)
    assert result["n"] == 1 and result["answered"] == 1 and result["first_packet_ms"]["p50"] is not None
    assert result["first_speech_token_ms"] == {"p50": None, "p95": None}  # the test speaker does not report it
    write_percentile_chart(tmp_path / "c.svg", "t", {s: result[s] for s in STAGES})
    svg = (tmp_path / "c.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<rect") == len(STAGES)


class TokenReportingSpeaker(RecordingSpeaker):
    """Reports its first 'codec token' a fixed 30 ms of compute before the first packet."""

    def __init__(self, clock) -> None:
        super().__init__(audio=True)
        self.clock, self.on_first_token = clock, None

    def speak(self, phrase):
        packets = super().speak(phrase)

        def lazily():  # as the decoder: nothing happens until the first packet is asked for
            if self.on_first_token is not None:
                self.on_first_token(phrase)
            self.clock.now += 0.03
            yield from packets

        return lazily()


def test_the_decoders_first_token_is_timed_when_the_speaker_reports_it(llm, speech_input, detector, speech):
    audio = conversation(silence(0.3), speech["q1"], silence(0.3))
    clock = FakeClock()
    speaker = TokenReportingSpeaker(clock)
    engine = make_engine(llm, speech_input, detector, forced_head(llm, ANSWER), speaker, max_answer_tokens=8,
                         sampling=SamplingConfig())
    figures = measure_turn(engine, LatencyCase(audio, 0.16), clock=clock, sleep=clock.sleep)
    assert figures["first_phrase_ms"] <= figures["first_speech_token_ms"]
    assert figures["first_speech_token_ms"] == pytest.approx(figures["first_packet_ms"] - 30)
    assert speaker.on_first_token is None  # the hook is removed afterwards


class LeanThenAnswerOnCall(StateHead):
    """Listens while leaning to answer (p(answer) 0.38: drafts begin on silent chunks), and answers
    from its `answer_on`-th decision on."""

    def __init__(self, hidden: int, answer_on: int) -> None:
        super().__init__(hidden)
        self.answer_on, self.calls = answer_on, 0
        with torch.no_grad():
            self.proj.weight.zero_()
            self.proj.bias.copy_(torch.tensor([1.0, 0.5, -10.0]))

    def decide(self, *args, **kwargs):
        self.calls += 1
        state, probabilities = super().decide(*args, **kwargs)
        return (ANSWER if self.calls >= self.answer_on else state), probabilities


@pytest.mark.parametrize("drafts", [True, False])
def test_a_draft_made_in_idle_time_has_the_first_packet_ready_at_the_decision(llm, speech_input, detector, speech,
                                                                              drafts):
    """The speaker takes 30 ms of (fake) compute before its first packet: a draft spends it while
    the head still listens, so phrase, speech token and packet all come with the decision."""
    audio = conversation(silence(0.3), speech["q1"], silence(1.2))
    clock = FakeClock()
    head = LeanThenAnswerOnCall(llm.hidden_size, answer_on=speech["q1"].size // CHUNK_SAMPLES + 5)
    engine = make_engine(llm, speech_input, detector, head, TokenReportingSpeaker(clock), max_answer_tokens=8,
                         sampling=SamplingConfig(), draft_threshold=0.3 if drafts else 2.0)
    figures = measure_turn(engine, LatencyCase(audio, 0.3 + speech["q1"].size / 16000), clock=clock,
                           sleep=clock.sleep)
    decided = figures["state_decision_ms"]
    assert decided > 0 and figures["first_phrase_ms"] == figures["first_speech_token_ms"] == decided
    assert figures["first_packet_ms"] == pytest.approx(decided if drafts else decided + 30)
    ready = ready_at_decision([figures])
    assert ready == {"first_text_token_ms": 1, "first_phrase_ms": 1, "first_packet_ms": int(drafts)}


def test_cases_are_requests_between_a_quiet_lead_and_a_quiet_wait_never_digital_zeros():
    wav = str(EXAMPLES_DIR / "question.wav")
    utterances = [Utterance(wav, "uh-huh", "reply", 0.1, 0.5), Utterance(wav, "q", "question", 0.2, 1.0),
                  Utterance(wav, "s", "statement", 0.2, 1.5), Utterance(wav, "t", "question", 0.2, 0.9)]
    cases = build_cases(utterances, 2)
    assert [c.speech_end_s for c in cases] == [LEAD_SECONDS + 1.0, LEAD_SECONDS + 1.5]
    for case in cases:
        assert case.audio.size / 16000 >= case.speech_end_s + WAIT_SECONDS
        assert case.audio.size % CHUNK_SAMPLES == 0 and np.all(case.audio != 0.0)
        quiet = case.audio[int(case.speech_end_s * 16000) + 1600:]
        assert 0 < np.sqrt(np.mean(quiet ** 2)) < 0.01  # a faint floor
    heard = read_audio(wav)[int(0.2 * 16000):int(1.0 * 16000)]
    start = int(LEAD_SECONDS * 16000) + int(0.2 * 16000)
    assert np.corrcoef(cases[0].audio[start:start + heard.size], heard)[0, 1] > 0.99


@pytest.mark.slow
def test_the_cli_times_the_shipped_model_and_writes_the_documented_report(tmp_path):
    manifest = tmp_path / "requests.jsonl"
    line = {"audio": str(EXAMPLES_DIR / "question.wav"), "text": "What is the capital of France?",
            "kind": "question", "speech_start": 0.3, "speech_end": 3.3}
    manifest.write_text(json.dumps(line) + "\n")
    report = tmp_path / "latency.md"
    result = subprocess.run([sys.executable, "-m", "freeze_omni", "eval", "latency", "--manifest", str(manifest),
                             "--turns", "1", "--json", "--report", str(report)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["n"] == figures["answered"] == 1 and len(figures["turns"]) == 1
    stages = [figures[s]["p50"] for s in STAGES]
    assert all(isinstance(v, float) for v in stages) and stages == sorted(stages) and 0 < stages[0] < 5000
    assert set(figures["ready_at_decision"]) == set(STAGES[1:]) and figures["draft_threshold"] == 0.0
    assert SPEECH_TOKEN in figures and report.read_text().startswith("# Latency")
    assert report.with_suffix(".svg").read_text().startswith("<svg")
