"""Turn engine on tiny random models, with the real Silero VAD on espeak-ng speech.

The state head is steered per chunk by its bias (a trained head is issue 5's stage 3), and the
LLM's output is limited to printable tokens so answers can be cut into phrases. Every check of
the conversation compares the session's KV with one rebuilt from its logical pieces.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from dialogue_support import (
    ANSWER,
    AnswerAfterSpeech,
    IGNORE,
    LISTEN,
    RecordingSpeaker,
    TOKEN_MS,
    _signature,
    assert_same_kv,
    conversation,
    drive,
    force,
    forced_head,
    make_engine,
    of_type,
    printable_llm,
    reference_kv,
    silence,
    system_ids,
    user_prefix,
)
from freeze_omni.adapter import LLM_RATE
from freeze_omni.errors import AudioError
from freeze_omni.dialogue import (
    AnswerAudio,
    AnswerFinished,
    AnswerPaused,
    AnswerResumed,
    AnswerStarted,
    AnswerText,
    Interrupted,
    Phase,
    SpeechEnded,
    SpeechStarted,
    StateDecision,
    TurnIgnored,
)

from freeze_omni.dialogue.phrases import PhraseRule
from freeze_omni.dialogue.turn import CHUNK_SAMPLES
from freeze_omni.llm import SamplingConfig
from freeze_omni.llm.state_head import StateHead

pytestmark = pytest.mark.usefixtures("one_thread")


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


@pytest.mark.parametrize("quiet_before", [0.0, 2.0])
def test_every_turn_starts_with_a_whole_pre_roll_even_in_a_new_session(llm, speech_input, detector, speech, heard,
                                                                        quiet_before):
    engine = make_engine(llm, speech_input, detector, forced_head(llm, LISTEN))
    session = engine.new_session("user")
    events = engine.accept_audio(session, conversation(silence(quiet_before), speech["q1"]))
    assert of_type(events, SpeechStarted) and heard
    assert heard[0].shape[0] == round(engine.config.preroll_ms / 1000 * LLM_RATE)  # 960 ms at 12.5 Hz


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


def test_empty_packets_are_work_slices_that_change_no_event(llm, speech_input, detector, speech):
    audio = conversation(silence(0.5), speech["q1"], silence(1.5))
    runs = []
    for slices in (False, True):
        engine = make_engine(llm, speech_input, detector, forced_head(llm, ANSWER), RecordingSpeaker(True, slices))
        runs.append([_signature(e) for e in drive(engine, engine.new_session("a"), audio)])
    assert runs[0] == runs[1] and any(kind == "AnswerAudio" for kind, _ in runs[0])


@torch.no_grad()
def test_talk_over_pauses_the_answer_before_the_vad_decides_and_acceptance_ends_it(llm, speech_input, detector,
                                                                                   speech):
    head, speaker = StateHead(llm.hidden_size), RecordingSpeaker(audio=True)
    engine = make_engine(llm, speech_input, detector, head, speaker, max_answer_tokens=32)
    session = engine.new_session("user")
    audio = conversation(silence(1.0), speech["q1"], silence(1.0), speech["q2"], silence(1.0))
    events = drive(engine, session, audio, AnswerAfterSpeech(head))
    answer_start_ms = of_type(events, AnswerAudio)[0].t_ms
    onset = of_type(events, SpeechStarted)[1]
    (paused,) = of_type(events, AnswerPaused)
    (interrupted,) = of_type(events, Interrupted)
    assert onset.speech_ms < paused.t_ms < onset.t_ms  # before the VAD has decided on a segment
    assert paused.t_ms - onset.speech_ms <= 96 + 30 + 160 + 64  # run + pad + one chunk + Silero's rise
    assert paused.unplayed_samples == round((answer_start_ms + 3200 - paused.t_ms) * 16)
    between = events[events.index(paused):events.index(interrupted)]
    assert not of_type(between, AnswerAudio) and not of_type(between, AnswerResumed)
    kept = int((onset.speech_ms - answer_start_ms) // TOKEN_MS)
    assert interrupted.kept_text == llm.tokenizer.decode(speaker.tokens(0, 8)[:kept])
    assert not of_type(events[:events.index(interrupted)], AnswerFinished)


@torch.no_grad()
def test_short_packets_pause_the_answer_sooner_and_change_nothing_else(llm, speech_input, detector, speech):
    """The VAD runs ahead over a partial chunk on a copy of its state: with 32 ms packets (one VAD
    window each) the pause comes at the window where the speech run reaches 96 ms, and every other
    event and the KV are those of the same audio fed in 160 ms chunks."""
    audio = conversation(silence(1.0), speech["q1"], silence(1.0), speech["q2"], silence(1.0))
    runs = {}
    for packet in (CHUNK_SAMPLES, 512):
        head = StateHead(llm.hidden_size)
        engine = make_engine(llm, speech_input, detector, head, RecordingSpeaker(audio=True), max_answer_tokens=32)
        session = engine.new_session("user")
        runs[packet] = drive(engine, session, audio, AnswerAfterSpeech(head), packet), session.kv.clone()
    (chunked, chunked_kv), (packets, packets_kv) = runs[CHUNK_SAMPLES], runs[512]
    assert [_signature(e) for e in chunked if not isinstance(e, AnswerPaused)] == \
        [_signature(e) for e in packets if not isinstance(e, AnswerPaused)]
    assert_same_kv(packets_kv, chunked_kv)
    (late,), (early,) = of_type(chunked, AnswerPaused), of_type(packets, AnswerPaused)
    onset = of_type(packets, SpeechStarted)[1].speech_ms
    assert early.t_ms - onset == 30 + 96 < late.t_ms - onset  # the onset's pad, then the window the run reaches 96 ms
    assert early.unplayed_samples - late.unplayed_samples == round((late.t_ms - early.t_ms) * 16)


@torch.no_grad()
@pytest.mark.parametrize("talk_over", ["cough", "ignored"])
def test_talk_over_that_comes_to_nothing_resumes_the_answer_with_the_audio_not_heard(llm, speech_input, detector,
                                                                                     speech, heard, talk_over):
    """A 200 ms burst never becomes a VAD segment; a whole sentence does, and the head ignores it.
    Either way the user hears the whole answer once, and the conversation is as if nothing was said."""
    head, speaker = StateHead(llm.hidden_size), RecordingSpeaker(audio=True)
    engine = make_engine(llm, speech_input, detector, head, speaker, max_answer_tokens=32)
    session = engine.new_session("user")
    policy = AnswerAfterSpeech(head)
    first = drive(engine, session, conversation(silence(1.0), speech["q1"], silence(1.0)), policy)
    n_heard = len(heard)
    force(head, IGNORE)
    noise = speech["q2"][3200:6400] if talk_over == "cough" else speech["q2"]
    rest = drive(engine, session, conversation(noise, silence(4.0)))
    events = first + rest
    paused, resumed = of_type(events, AnswerPaused), of_type(events, AnswerResumed)
    assert paused and len(paused) == len(resumed)
    assert all(p.t_ms < r.t_ms for p, r in zip(paused, resumed))
    assert bool(of_type(events, TurnIgnored)) == (talk_over == "ignored")
    heard_samples = sum(e.pcm.size for e in of_type(events, AnswerAudio)) - sum(p.unplayed_samples for p in paused)
    assert heard_samples == 32 * int(TOKEN_MS * 16)
    (finished,) = of_type(events, AnswerFinished)
    assert finished.text == llm.tokenizer.decode(speaker.tokens(), skip_special_tokens=True)
    expected = [system_ids(llm), user_prefix(llm, speech_input), torch.cat(heard[:n_heard]),
                llm.template.user_end_assistant_start + speaker.tokens() + llm.template.assistant_end]
    assert_same_kv(session.kv, reference_kv(llm, expected))
    assert [(h.role, h.text) for h in session.history] == [("user", None), ("assistant", finished.text)]


@torch.no_grad()
def test_tokens_run_ahead_once_enough_audio_is_queued(llm, speech_input, detector, speech):
    """Speech work comes first until `audio_lead_ms` of audio waits ahead of the clock; then the
    next phrase's tokens are generated while the current one still plays."""
    head, speaker = StateHead(llm.hidden_size), RecordingSpeaker(audio=True)
    engine = make_engine(llm, speech_input, detector, head, speaker, audio_lead_ms=480.0,
                         phrases=PhraseRule(min_tokens=4, max_tokens=4, first_words=0))
    session = engine.new_session("user")
    policy = AnswerAfterSpeech(head)
    audio = conversation(silence(1.0), speech["q1"], silence(1.0))
    for start in range(0, audio.size, CHUNK_SAMPLES):  # no answer work: stop once the answer starts
        policy(engine.accept_audio(session, audio[start:start + CHUNK_SAMPLES]))
        if session.answer is not None:
            break
    units = []
    while (unit := engine.next_answer_unit(session)) is not None:  # the clock stands still meanwhile
        units.append(unit)
        engine.step_answer(session, 1)
    runs = [(unit, len(list(group))) for unit, group in itertools.groupby(units)]
    # 4 tokens; phrase 1 started, 4 packets (400 ms queued), finished; 4 tokens; phrase 2 started and
    # one packet (500 ms queued); 4 tokens and the stop at max_answer_tokens; then all the rest of the audio
    assert runs == [("token", 4), ("speech", 6), ("token", 4), ("speech", 2), ("token", 5), ("speech", 10)]


def test_audio_slack_counts_from_the_answer_start_then_from_the_queued_audio(llm, speech_input, detector, speech):
    """What the server's scheduler orders answer work by: how long the user has gone without
    answer audio (negative) or how much is queued ahead of the clock."""
    head, speaker = StateHead(llm.hidden_size), RecordingSpeaker(audio=True)
    engine = make_engine(llm, speech_input, detector, head, speaker,
                         phrases=PhraseRule(min_tokens=2, max_tokens=2, first_words=0))
    session = engine.new_session("user")
    policy = AnswerAfterSpeech(head)
    audio = conversation(silence(1.0), speech["q1"], silence(1.0))
    start = 0
    while session.answer is None:  # no answer work: stop once the answer starts
        assert engine.audio_slack_ms(session) is None
        policy(engine.accept_audio(session, audio[start:start + CHUNK_SAMPLES]))
        start += CHUNK_SAMPLES
    assert engine.audio_slack_ms(session) == 0.0
    policy(engine.accept_audio(session, audio[start:start + CHUNK_SAMPLES]))  # a chunk passes with no answer work
    assert engine.audio_slack_ms(session) == -160.0
    while not of_type(engine.step_answer(session, 1), AnswerAudio):
        assert engine.audio_slack_ms(session) == -160.0
    assert engine.audio_slack_ms(session) == TOKEN_MS  # one packet queued, from the clock on
    engine.step_answer(session, 1)
    assert engine.audio_slack_ms(session) == 2 * TOKEN_MS
    engine.step_answer(session, 10_000)
    assert session.answer is not None and engine.audio_slack_ms(session) is None  # all produced, still playing


@torch.no_grad()
def test_the_answer_knows_where_speech_ended_even_before_the_vad_end_event(llm, speech_input, detector, speech):
    audio = conversation(silence(1.0), speech["q1"], silence(1.5))
    head = StateHead(llm.hidden_size)
    engine = make_engine(llm, speech_input, detector, head)
    later = drive(engine, engine.new_session("a"), audio, AnswerAfterSpeech(head))
    (vad_end,) = of_type(later, SpeechEnded)
    assert of_type(later, AnswerStarted)[0].speech_end_ms == vad_end.speech_ms

    force(head, LISTEN)
    session, events = engine.new_session("b"), []
    for start in range(0, audio.size, CHUNK_SAMPLES):
        if start >= vad_end.speech_ms * 16:  # silence has begun; the VAD's end event is still to come
            force(head, ANSWER)
        events += drive(engine, session, audio[start:start + CHUNK_SAMPLES])
    started = of_type(events, AnswerStarted)[0]
    assert not of_type(events[:events.index(started)], SpeechEnded)
    assert started.speech_end_ms == vad_end.speech_ms - detector.config.speech_pad_ms


def _rounded(signature: tuple) -> tuple:
    """Batched passes may differ from single ones in the last float bits: compare to 4 decimals."""
    name, fields = signature
    return name, tuple((k, tuple(round(p, 4) for p in v) if k == "probabilities" else v) for k, v in fields)


@torch.no_grad()
def test_sessions_run_as_a_batch_get_what_each_gets_alone(llm, speech_input, detector, speech):
    engine = make_engine(llm, speech_input, detector, forced_head(llm, ANSWER), RecordingSpeaker(audio=True),
                         max_answer_tokens=20)
    audio = {"a": conversation(silence(0.5), speech["q1"], silence(1.5), speech["q2"], silence(1.0)),
             "b": conversation(silence(1.3), speech["q2"], silence(0.4), speech["q1"], silence(0.6)),
             "c": conversation(silence(4.0))}
    alone = {}
    for name, clip in audio.items():
        session = engine.new_session(name)
        alone[name] = [_rounded(_signature(e)) for e in drive(engine, session, clip)], session.kv
    # Each round, every session does what it would do next alone (`drive`: a chunk, then all
    # its answer work), so one batch mixes one user's chunk with another's answer token.
    sessions = {name: engine.new_session(name) for name in audio}
    together = {name: [] for name in audio}
    fed = dict.fromkeys(audio, 0)
    mixed = 0
    while True:
        work = {}
        for name, session in sessions.items():
            if engine.has_answer_work(session):
                work[name] = engine.answer_work(session)
            elif fed[name] < audio[name].size:
                work[name] = engine.audio_work(session, audio[name][fed[name]:fed[name] + CHUNK_SAMPLES])
                fed[name] += CHUNK_SAMPLES
        if not work:
            break
        kinds = {engine.has_answer_work(sessions[n]) for n in work}
        mixed += len(kinds) > 1
        for name, events in zip(work, engine.run_batch([(sessions[n], w) for n, w in work.items()])):
            together[name] += [_rounded(_signature(e)) for e in events]
    assert mixed  # some batches held a chunk of one user and answer work of another
    for name in audio:
        assert together[name] == alone[name][0]
        assert_same_kv(sessions[name].kv, alone[name][1])


@torch.no_grad()
def test_bad_input_in_a_batch_fails_alone_and_leaves_its_session_unchanged(llm, speech_input, detector, speech):
    engine = make_engine(llm, speech_input, detector, forced_head(llm, LISTEN))
    good, bad = engine.new_session("good"), engine.new_session("bad")
    broken = np.full(CHUNK_SAMPLES, np.nan, np.float32)
    with pytest.raises(ValueError):
        engine.run_batch([(good, engine.audio_work(good, speech["q1"][:CHUNK_SAMPLES])),
                          (good, engine.audio_work(good, broken))])
    results = engine.run_batch([(good, engine.audio_work(good, speech["q1"][:CHUNK_SAMPLES * 10])),
                                (bad, engine.audio_work(bad, broken))])
    assert isinstance(results[1], AudioError) and of_type(results[0], SpeechStarted)
    assert good.samples_in == CHUNK_SAMPLES * 10 and bad.samples_in == 0 and bad.unconsumed.size == 0


@torch.no_grad()
def test_an_acoustic_state_head_hears_the_encoder_through_the_engine(llm, speech_input, detector, speech):
    plain = forced_head(llm, LISTEN)
    acoustic = StateHead(llm.hidden_size, speech_input.encoder.config.dim, 3)
    acoustic.load_state_dict(plain.state_dict(), strict=False)
    audio = conversation(silence(0.5), speech["q1"], silence(0.6))

    def probabilities(head):
        engine = make_engine(llm, speech_input, detector, head)
        return [e.probabilities for e in of_type(drive(engine, engine.new_session("user"), audio), StateDecision)]

    heard_plain = probabilities(plain)
    assert heard_plain and probabilities(acoustic) == heard_plain  # its acoustic map starts at zero
    acoustic.acoustic.weight.normal_(0.0, 0.01, generator=torch.Generator().manual_seed(0))  # small: still LISTEN
    heard = probabilities(acoustic)
    assert len(heard) == len(heard_plain) and all(a != b for a, b in zip(heard, heard_plain))


class LeanThenAnswer:
    """Head policy: listen but lean to answer (p(answer) 0.38, enough for a draft) on every chunk,
    and answer on the chunk after the VAD end."""

    def __init__(self, head: StateHead) -> None:
        self.head = head
        self.lean()

    def lean(self) -> None:
        with torch.no_grad():
            self.head.proj.weight.zero_()
            self.head.proj.bias.copy_(torch.tensor([1.0, 0.5, -10.0]))

    def __call__(self, events) -> None:
        for event in events:
            if isinstance(event, SpeechEnded):
                force(self.head, ANSWER)
            elif isinstance(event, AnswerStarted):
                self.lean()


def _lean_conversation(llm, speech_input, detector, audio, heard, idle: bool, temperature: float):
    """One conversation with a `LeanThenAnswer` head; with `idle`, all answer work after every
    chunk (drafts run), else only once no turn is heard. Returns the events, the session, the
    speaker, the speech embeddings heard and, per draft set, how many of them it had."""
    head, speaker = StateHead(llm.hidden_size), RecordingSpeaker(audio=True)
    engine = make_engine(llm, speech_input, detector, head, speaker, draft_threshold=0.3,
                         sampling=SamplingConfig(temperature=temperature))
    session = engine.new_session("user", seed=7)
    policy = LeanThenAnswer(head)
    first, drafts, seen, events = len(heard), [], None, []
    for start in range(0, audio.size, CHUNK_SAMPLES):
        new = engine.accept_audio(session, audio[start:start + CHUNK_SAMPLES])
        draft = session.listening.draft if session.listening is not None else None
        if draft is not None and draft is not seen:
            drafts.append(len(heard) - first)
            assert draft.answer is None and engine.has_answer_work(session)
            assert engine.audio_slack_ms(session) == float("inf")  # served after every real answer
        seen = draft
        if idle and draft is not None:
            engine.step_answer(session, 10_000)
            assert len(draft.packets) == 1 and draft.phrase.index == 0  # its first packet waits,
            assert not draft.answer.text and not draft.answer.playout.phrases  # unshown and unplayed
        if idle or session.listening is None:
            new += engine.step_answer(session, 10_000)
        policy(new)
        events += new
    return events, session, speaker, heard[first:], drafts


@torch.no_grad()
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_the_answer_hears_the_turn_up_to_its_draft_with_or_without_idle_time(llm, speech_input, detector, speech,
                                                                             heard, temperature):
    """A pause shorter than the VAD's end sets a draft that is dropped when the user goes on; the
    one set after the second part is what the answer hears: the turn without the chunks after
    it. Whether its work ran in idle time (before the decision) or not changes nothing else, even
    when sampling (the dropped draft sampled with a copy of the session's generator)."""
    # the answer's 12 tokens of 100 ms play out in the last silence
    audio = conversation(silence(1.0), speech["q1"], silence(0.1), speech["q2"], silence(2.4))
    events, session, speaker, embeds, drafts = _lean_conversation(llm, speech_input, detector, audio, heard, True,
                                                                  temperature)
    assert len(of_type(events, AnswerFinished)) == 1 and not of_type(events, TurnIgnored)
    assert len(drafts) >= 2 and drafts[0] < drafts[-1] < len(embeds)  # one in the pause, dropped; one after q2
    template = llm.template
    answer_start = max(i for i, phrase in enumerate(speaker.phrases) if phrase.index == 0)  # not a dropped draft's
    turn = [system_ids(llm), user_prefix(llm, speech_input), torch.cat(embeds[:drafts[-1]]),
            template.user_end_assistant_start + speaker.tokens(answer_start) + template.assistant_end]
    assert_same_kv(session.kv, reference_kv(llm, turn))

    busy = _lean_conversation(llm, speech_input, detector, audio, heard, False, temperature)
    assert [_signature(e) for e in busy[0]] == [_signature(e) for e in events]
    assert_same_kv(busy[1].kv, session.kv)
    assert torch.equal(busy[1].generator.get_state(), session.generator.get_state())
