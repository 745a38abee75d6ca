"""Turn engine on tiny random models, with the real Silero VAD on espeak-ng speech.

The state head is steered per chunk by its bias (a trained head is issue 5's stage 3), and the
LLM's output is limited to printable tokens so answers can be cut into phrases. Every check of
the conversation compares the session's KV with one rebuilt from its logical pieces.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_hf_model
from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.io import read_audio
from freeze_omni.audio.vad import SpeechDetector
from freeze_omni.dialogue import (
    DEFAULT_SYSTEM_PROMPT,
    AnswerAudio,
    AnswerFinished,
    AnswerStarted,
    AnswerText,
    DialogueConfig,
    Interrupted,
    Phase,
    SpeechEnded,
    SpeechStarted,
    StateDecision,
    TurnEngine,
    TurnIgnored,
)
from freeze_omni.dialogue.phrases import PhraseRule
from freeze_omni.dialogue.turn import CHUNK_SAMPLES
from freeze_omni.encoder import EncoderConfig, SpeechEncoder
from freeze_omni.llm import FrozenLLM, KVCache, SamplingConfig
from freeze_omni.llm.state_head import DialogueState, StateHead
from freeze_omni.speech_input import SpeechInput

TOKEN_MS = 100.0  # audio per answer token from the test speaker
LISTEN, ANSWER, IGNORE = DialogueState.LISTEN, DialogueState.ANSWER, DialogueState.IGNORE


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def printable_llm(stop_wins: bool = False) -> FrozenLLM:
    """The tiny random qwen2 backbone, made to write printable ASCII only (and to end at once when
    `stop_wins`); otherwise it never stops before `max_answer_tokens`."""
    model, tokenizer = tiny_hf_model("qwen2")
    llm = FrozenLLM.from_hf_model(model, tokenizer)
    pieces = [tokenizer.decode([i]) for i in range(llm.config.vocab_size)]
    printable = torch.tensor([bool(p) and p.isascii() and p.isprintable() and i not in tokenizer.all_special_ids
                              for i, p in enumerate(pieces)])
    bias = torch.where(printable, 0.0, -1e4)
    if stop_wins:
        bias[list(llm.stop_ids)] = 1e4
    head = nn.Linear(llm.hidden_size, llm.config.vocab_size)
    head.weight = llm.model.lm_head.weight
    head.bias = nn.Parameter(bias, requires_grad=False)
    llm.model.lm_head = head
    return llm


@pytest.fixture(scope="module")
def llm() -> FrozenLLM:
    return printable_llm()


@pytest.fixture(scope="module")
def speech_input(llm) -> SpeechInput:
    torch.manual_seed(1)
    encoder = SpeechEncoder(EncoderConfig("conv2d", n_mels=80, dim=32, heads=2, layers=1, ffn_dim=64, conv_channels=8))
    return SpeechInput(encoder, llm.hidden_size).eval()


@pytest.fixture(scope="module")
def detector() -> SpeechDetector:
    return SpeechDetector()


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("speech")
    clips = {}
    for name, text in {"q1": "What is the capital of France?", "q2": "Wait, tell me about Spain instead."}.items():
        wav = folder / f"{name}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True, capture_output=True)
        clips[name] = read_audio(wav)
    return clips


@pytest.fixture
def heard(monkeypatch, speech_input) -> list[torch.Tensor]:
    """Every embedding the speech input produces, in order ([n, hidden] per call)."""
    calls: list[torch.Tensor] = []
    step = speech_input.step

    def spy(feats, cache):
        embeds, cache = step(feats, cache)
        calls.append(embeds[0])
        return embeds, cache

    monkeypatch.setattr(speech_input, "step", spy)
    return calls


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


def conversation(*parts: np.ndarray) -> np.ndarray:
    """Audio padded to whole 160 ms chunks."""
    audio = np.concatenate(parts)
    return np.concatenate([audio, np.zeros(-audio.size % CHUNK_SAMPLES, np.float32)])


def force(head: StateHead, state: DialogueState) -> None:
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.zero_()
        head.proj.bias[state] = 10.0


def forced_head(llm: FrozenLLM, state: DialogueState) -> StateHead:
    head = StateHead(llm.hidden_size)
    force(head, state)
    return head


class AnswerAfterSpeech:
    """Head policy: listen while the user talks, answer on the first chunk after the VAD end."""

    def __init__(self, head: StateHead) -> None:
        self.head = head
        force(head, LISTEN)

    def __call__(self, events) -> None:
        for event in events:
            if isinstance(event, SpeechEnded):
                force(self.head, ANSWER)
            elif isinstance(event, AnswerStarted):
                force(self.head, LISTEN)


class RecordingSpeaker:
    """Text only, or TOKEN_MS of tone per token; remembers every phrase it was given."""

    sample_rate = SAMPLE_RATE

    def __init__(self, audio: bool = False) -> None:
        self.audio = audio
        self.phrases = []

    def speak(self, phrase):
        assert phrase.hidden.shape[0] == len(phrase.token_ids) and phrase.index >= 0
        self.phrases.append(phrase)
        packets = len(phrase.token_ids) if self.audio else 0
        return (np.full(int(TOKEN_MS * SAMPLE_RATE / 1000), 0.1, np.float32) for _ in range(packets))

    def tokens(self, start: int = 0, end: int | None = None) -> list[int]:
        return [t for phrase in self.phrases[start:end] for t in phrase.token_ids]


def make_engine(llm, speech_input, detector, head, speaker=None, **settings) -> TurnEngine:
    settings = {"max_answer_tokens": 12, "phrases": PhraseRule(min_tokens=1, max_tokens=4),
                "sampling": SamplingConfig(temperature=1.0), **settings}
    return TurnEngine(speech_input, llm, head, detector, speaker or RecordingSpeaker(), DialogueConfig(**settings))


def drive(engine: TurnEngine, session, audio: np.ndarray, policy=None) -> list:
    """Feed the audio chunk by chunk, doing all answer work after each chunk."""
    events = []
    for start in range(0, audio.size, CHUNK_SAMPLES):
        new = engine.accept_audio(session, audio[start:start + CHUNK_SAMPLES])
        new += engine.step_answer(session, max_steps=10_000)
        if policy is not None:
            policy(new)
        events += new
    return events


def reference_kv(llm: FrozenLLM, pieces: list) -> KVCache:
    """A KV built from the conversation's logical pieces: token ids or [n, hidden] embeddings."""
    kv = llm.new_cache()
    for piece in pieces:
        llm.prefill(llm.embed_ids(piece) if isinstance(piece, list) else piece[None], kv)
    return kv


def system_ids(llm: FrozenLLM) -> list[int]:
    return llm.template.system(llm.tokenizer, DEFAULT_SYSTEM_PROMPT)


def user_prefix(llm: FrozenLLM, speech_input: SpeechInput) -> torch.Tensor:
    return torch.cat([llm.embed_ids(llm.template.user_start)[0], speech_input.prompt.detach()])


def assert_same_kv(actual: KVCache, expected: KVCache) -> None:
    assert actual.length == expected.length
    n = actual.length
    torch.testing.assert_close(actual.keys[:, :, :, :n], expected.keys[:, :, :, :n], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(actual.values[:, :, :, :n], expected.values[:, :, :, :n], atol=1e-5, rtol=1e-4)


def of_type(events, kind) -> list:
    return [e for e in events if isinstance(e, kind)]


@torch.no_grad()
def test_turns_append_the_template_and_the_answer_and_the_history_grows(llm, speech_input, detector, speech, heard):
    head, speaker = StateHead(llm.hidden_size), RecordingSpeaker()
    engine = make_engine(llm, speech_input, detector, head, speaker)
    session = engine.new_session("user")
    policy = AnswerAfterSpeech(head)
    template = llm.template

    first = drive(engine, session, conversation(silence(1.0), speech["q1"], silence(1.0)), policy)
    assert not engine.has_answer_work(session)
    assert [type(e) for e in first if not isinstance(e, StateDecision)] == [
        SpeechStarted, SpeechEnded, AnswerStarted, AnswerText, AnswerText, AnswerText, AnswerFinished]
    decisions = of_type(first, StateDecision)
    assert [d.state for d in decisions] == [LISTEN] * (len(decisions) - 1) + [ANSWER]
    assert decisions[-1].t_ms > of_type(first, SpeechEnded)[0].t_ms and not decisions[-1].barge_in
    answer_1 = speaker.tokens()
    assert len(answer_1) == 12 and len(speaker.phrases) == 3
    text_1 = "".join(e.text for e in of_type(first, AnswerText))
    assert of_type(first, AnswerFinished)[0].text == text_1 == llm.tokenizer.decode(answer_1)
    speech_1 = torch.cat(heard)
    turn_1 = [system_ids(llm), user_prefix(llm, speech_input), speech_1,
              template.user_end_assistant_start + answer_1 + template.assistant_end]
    assert_same_kv(session.kv, reference_kv(llm, turn_1))
    assert session.phase is Phase.IDLE

    n_heard = len(heard)
    second = drive(engine, session, conversation(speech["q2"], silence(1.0)), policy)
    assert len(of_type(second, AnswerFinished)) == 1 and not of_type(second, Interrupted)
    answer_2 = speaker.tokens(3)
    turn_2 = [user_prefix(llm, speech_input), torch.cat(heard[n_heard:]),
              template.user_end_assistant_start + answer_2 + template.assistant_end]
    assert_same_kv(session.kv, reference_kv(llm, turn_1 + turn_2))
    text_2 = of_type(second, AnswerFinished)[0].text
    assert [(h.role, h.text, h.interrupted) for h in session.history] == [
        ("user", None, False), ("assistant", text_1, False), ("user", None, False), ("assistant", text_2, False)]
    assert session.history[0].start_ms == of_type(first, SpeechStarted)[0].speech_ms


@torch.no_grad()
@pytest.mark.parametrize("state, reason", [(IGNORE, "state"), (LISTEN, "timeout")], ids=["ignore", "no-decision"])
def test_an_ignored_turn_leaves_the_conversation_exactly_as_it_was(llm, speech_input, detector, speech, state, reason):
    head = StateHead(llm.hidden_size)
    engine = make_engine(llm, speech_input, detector, head)
    session = engine.new_session("user")
    drive(engine, session, conversation(silence(1.0), speech["q1"], silence(1.0)), AnswerAfterSpeech(head))
    before, history = session.kv.clone(), list(session.history)

    force(head, state)
    events = drive(engine, session, conversation(silence(0.5), speech["q2"], silence(2.0)))
    ignored = of_type(events, TurnIgnored)
    assert ignored and {e.reason for e in ignored} == {reason}
    assert not of_type(events, AnswerStarted)
    if reason == "timeout":  # one turn, dropped end_timeout_ms after the VAD end
        deadline = of_type(events, SpeechEnded)[-1].t_ms + engine.config.end_timeout_ms
        assert deadline <= ignored[0].t_ms < deadline + 160
    assert session.kv.length == before.length
    assert torch.equal(session.kv.keys[:, :, :, :before.length], before.keys)
    assert torch.equal(session.kv.values[:, :, :, :before.length], before.values)
    assert session.history == history and session.phase is Phase.IDLE


@torch.no_grad()
def test_an_answer_ends_at_the_stop_token_which_is_closed_by_the_template(speech_input, detector, speech, heard):
    llm = printable_llm(stop_wins=True)
    head = StateHead(llm.hidden_size)
    engine = make_engine(llm, speech_input, detector, head)
    session = engine.new_session("user")
    events = drive(engine, session, conversation(silence(1.0), speech["q1"], silence(1.0)), AnswerAfterSpeech(head))
    assert [type(e) for e in events if not isinstance(e, StateDecision)] == [
        SpeechStarted, SpeechEnded, AnswerStarted, AnswerFinished]
    assert of_type(events, AnswerFinished)[0].text == "" and not of_type(events, AnswerText)
    expected = [system_ids(llm), user_prefix(llm, speech_input), torch.cat(heard),
                llm.template.user_end_assistant_start + llm.template.assistant_end]
    assert_same_kv(session.kv, reference_kv(llm, expected))


@torch.no_grad()
def test_barge_in_keeps_only_what_was_heard_and_answers_the_new_turn(llm, speech_input, detector, speech, heard):
    head, speaker = StateHead(llm.hidden_size), RecordingSpeaker(audio=True)
    engine = make_engine(llm, speech_input, detector, head, speaker, max_answer_tokens=64)
    session = engine.new_session("user")
    policy = AnswerAfterSpeech(head)
    template = llm.template

    first = drive(engine, session, conversation(silence(1.0), speech["q1"], silence(0.8)), policy)
    assert session.phase is Phase.SPEAKING  # 6.4 s of answer audio, all produced, still playing
    answer_1, n_phrases, n_heard = speaker.tokens(), len(speaker.phrases), len(heard)
    audio_1 = of_type(first, AnswerAudio)
    assert len(audio_1) == 64 and len({e.t_ms for e in audio_1}) == 1
    answer_start_ms = audio_1[0].t_ms

    second = drive(engine, session, conversation(speech["q2"], silence(1.0)), policy)
    onset = of_type(second, SpeechStarted)[0]
    (interrupted,) = of_type(second, Interrupted)
    assert interrupted.t_ms < answer_start_ms + 64 * TOKEN_MS  # the first answer was still playing
    kept = int((onset.speech_ms - answer_start_ms) // TOKEN_MS)
    assert 0 < kept < 64
    assert interrupted.kept_text == llm.tokenizer.decode(answer_1[:kept])
    before_cut = second[:second.index(interrupted)]
    assert all(d.barge_in for d in of_type(before_cut, StateDecision))
    assert [type(e) for e in second[second.index(interrupted):]][:3] == [Interrupted, AnswerStarted, AnswerText]
    assert not of_type(second, AnswerFinished)  # neither the cut answer nor the new one (still playing)

    answer_2 = speaker.tokens(n_phrases)
    assert len(answer_2) == 64
    expected = [system_ids(llm), user_prefix(llm, speech_input), torch.cat(heard[:n_heard]),
                template.user_end_assistant_start + answer_1[:kept] + template.assistant_end,
                user_prefix(llm, speech_input), torch.cat(heard[n_heard:]),
                template.user_end_assistant_start + answer_2 + template.assistant_end]
    assert_same_kv(session.kv, reference_kv(llm, expected))
    assert [(h.role, h.text, h.interrupted) for h in session.history] == [
        ("user", None, False), ("assistant", interrupted.kept_text, True), ("user", None, False)]
    assert session.phase is Phase.SPEAKING


def _signature(event) -> tuple:
    fields = dict(vars(event))
    if isinstance(event, AnswerAudio):
        fields["pcm"] = (fields["pcm"].size, float(fields["pcm"].sum()))
    return type(event).__name__, tuple(sorted(fields.items()))


@torch.no_grad()
def test_interleaved_sessions_get_the_same_events_as_each_alone(llm, speech_input, detector, speech):
    """The engine keeps nothing between calls: an always-answering head makes every new stretch of
    speech a barge-in on the answer before it, which exercises every path."""
    engine = make_engine(llm, speech_input, detector, forced_head(llm, ANSWER), RecordingSpeaker(audio=True),
                         max_answer_tokens=20)
    audio = {"a": conversation(silence(0.5), speech["q1"], silence(1.5), speech["q2"], silence(1.0)),
             "b": conversation(silence(1.3), speech["q2"], silence(0.4), speech["q1"], silence(0.6))}
    alone = {}
    for name, clip in audio.items():
        session = engine.new_session(name)
        alone[name] = [_signature(e) for e in drive(engine, session, clip)], session.kv.clone()
    sessions = {name: engine.new_session(name) for name in audio}
    together = {name: [] for name in audio}
    for start in range(0, max(clip.size for clip in audio.values()), CHUNK_SAMPLES):
        for name, clip in audio.items():
            together[name] += [_signature(e) for e in drive(engine, sessions[name], clip[start:start + CHUNK_SAMPLES])]
    for name in audio:
        assert together[name] == alone[name][0]
        assert_same_kv(sessions[name].kv, alone[name][1])
    kinds = {kind for kind, _ in alone["a"][0]}
    assert {"Interrupted", "AnswerAudio", "AnswerStarted"} <= kinds


@torch.no_grad()
def test_an_answer_talked_over_to_its_end_is_cut_when_the_new_turn_is_accepted(llm, speech_input, detector, speech):
    """The user starts talking 1 s before a 1.6 s answer ends and is accepted after it has ended:
    the record of the answer still keeps only what played before the onset."""
    head, speaker = StateHead(llm.hidden_size), RecordingSpeaker(audio=True)
    engine = make_engine(llm, speech_input, detector, head, speaker, max_answer_tokens=16)
    session = engine.new_session("user")
    audio = conversation(silence(1.0), speech["q1"], silence(1.0), speech["q2"], silence(1.0))
    events = drive(engine, session, audio, AnswerAfterSpeech(head))
    answer_start_ms = of_type(events, AnswerAudio)[0].t_ms
    onset = of_type(events, SpeechStarted)[1]
    finished = of_type(events, AnswerFinished)[0]
    (interrupted,) = of_type(events, Interrupted)
    assert onset.t_ms < finished.t_ms < interrupted.t_ms
    kept = int((onset.speech_ms - answer_start_ms) // TOKEN_MS)
    assert 0 < kept < 16 and finished.text == llm.tokenizer.decode(speaker.tokens(0, 4))
    assert interrupted.kept_text == llm.tokenizer.decode(speaker.tokens(0, 4)[:kept])
    assert [(h.role, h.text, h.interrupted) for h in session.history[:3]] == [
        ("user", None, False), ("assistant", interrupted.kept_text, True), ("user", None, False)]
