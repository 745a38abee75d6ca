"""Session files (continue a conversation later) and bad input, on the tiny models of the turn tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_hf_model
from freeze_omni.dialogue import AnswerFinished, Phase, Session
from freeze_omni.audio.vad import VadState
from freeze_omni.errors import FreezeOmniError
from freeze_omni.llm import FrozenLLM
from freeze_omni.llm.state_head import StateHead

pytestmark = pytest.mark.usefixtures("one_thread")
from dialogue_support import (
    AnswerAfterSpeech,
    RecordingSpeaker,
    _signature,
    assert_same_kv,
    conversation,
    drive,
    make_engine,
    of_type,
    silence,
)


@torch.no_grad()
def test_a_loaded_session_continues_exactly_like_the_original(
        llm, speech_input, detector, speech, tmp_path):  # noqa: F811
    head = StateHead(llm.hidden_size)
    engine = make_engine(llm, speech_input, detector, head)
    original = engine.new_session("user-7")
    drive(engine, original, conversation(silence(1.0), speech["q1"], silence(1.0)), AnswerAfterSpeech(head))
    assert original.phase is Phase.IDLE and len(original.history) == 2
    original.save(tmp_path / "user-7.session")
    loaded = Session.load(tmp_path / "user-7.session", llm)
    assert loaded.session_id == "user-7" and loaded.history == original.history
    assert_same_kv(loaded.kv, original.kv)

    offset = original.t_ms
    follow_up = conversation(silence(1.5), speech["q2"], silence(1.0))
    continued = drive(engine, original, follow_up, AnswerAfterSpeech(head))
    resumed = drive(engine, loaded, follow_up, AnswerAfterSpeech(head))
    assert of_type(resumed, AnswerFinished)
    assert [_signature(e) for e in resumed] == [_signature(shifted(e, offset)) for e in continued]
    assert_same_kv(loaded.kv, original.kv)
    assert loaded.history[2:] == [shifted(h, offset) for h in original.history[2:]]


def shifted(record, offset_ms: float):
    """An event or history entry with its times moved back by `offset_ms` (a loaded session's clock
    starts at zero)."""
    return type(record)(**{k: v - offset_ms if k.endswith("_ms") else v for k, v in vars(record).items()})


@torch.no_grad()
def test_saving_mid_answer_keeps_only_the_finished_exchanges(
        llm, speech_input, detector, speech, tmp_path):  # noqa: F811
    head = StateHead(llm.hidden_size)
    engine = make_engine(llm, speech_input, detector, head, RecordingSpeaker(audio=True))
    session = engine.new_session("user")
    system_only = session.kv.clone()
    drive(engine, session, conversation(silence(1.0), speech["q1"], silence(0.5)), AnswerAfterSpeech(head))
    assert session.phase is Phase.SPEAKING
    session.save(tmp_path / "mid.session")
    loaded = Session.load(tmp_path / "mid.session", llm)
    assert loaded.history == [] and loaded.phase is Phase.IDLE
    assert_same_kv(loaded.kv, system_only)


def test_a_session_file_for_another_model_or_no_session_file_is_refused(llm, tmp_path):  # noqa: F811
    garbage = tmp_path / "garbage.session"
    garbage.write_bytes(b"not a session")
    with pytest.raises(FreezeOmniError, match="session file"):
        Session.load(garbage, llm)
    torch.save({"version": 99}, tmp_path / "future.session")
    with pytest.raises(FreezeOmniError, match="session file"):
        Session.load(tmp_path / "future.session", llm)
    saved = tmp_path / "tiny.session"
    session = Session(session_id="s", kv=llm.new_cache(), vad=VadState(), generator=torch.Generator())
    session.save(saved)
    other = FrozenLLM.from_hf_model(*tiny_hf_model("llama"))
    with pytest.raises(FreezeOmniError, match="different LLM"):
        Session.load(saved, other)


@torch.no_grad()
@pytest.mark.parametrize("bad, message", [
    (np.zeros(3000, np.int16), "float samples"),
    (np.zeros((3000, 2), np.float32), "mono"),
    (np.full(3000, np.nan, np.float32), "NaN"),
    ([0.0] * 3000, "numpy array"),
])
def test_bad_audio_is_refused_and_leaves_the_session_unchanged(
        llm, speech_input, detector, speech, bad, message):  # noqa: F811
    engine = make_engine(llm, speech_input, detector, StateHead(llm.hidden_size))
    session = engine.new_session("user")
    engine.accept_audio(session, speech["q1"][:6000])  # two chunks and a remainder
    state = (session.unconsumed.copy(), session.preroll.copy(), session.samples_in, session.kv.length,
             session.vad.samples_seen, session.phase)
    with pytest.raises(FreezeOmniError, match=message):
        engine.accept_audio(session, bad)
    after = (session.unconsumed, session.preroll, session.samples_in, session.kv.length, session.vad.samples_seen,
             session.phase)
    assert np.array_equal(after[0], state[0]) and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
