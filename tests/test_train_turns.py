"""Stage 3 conversations: chunk labels follow the sound's end, plans are fixed by their seed."""

import numpy as np
import pytest

from freeze_omni.llm.state_head import DialogueState
from freeze_omni.train.sequences import IGNORE
from freeze_omni.train.turns import (
    CHUNK_SAMPLES, TurnPlan, TurnSettings, Utterance, chunk_labels, plan_conversations, turn_audio,
)

LISTEN, ANSWER, STOP = int(DialogueState.LISTEN), int(DialogueState.ANSWER), int(DialogueState.IGNORE)


def test_labels_listen_during_the_sound_then_decide():
    settings = TurnSettings(listen_margin=0.08, decide_after=0.24)
    # sound ends at 1.00 s; chunk k ends at 0.16 (k + 1): chunks 0-5 end before 1.08 (listen),
    # chunk 6 (1.12) falls in the gap, chunk 7 (1.28) is the first at or after 1.24
    labels = chunk_labels(1.0, DialogueState.ANSWER, 2, settings)
    ends = [(k + 1) * 0.16 for k in range(len(labels))]
    assert labels[:6] == [LISTEN] * 6 and ends[5] < 1.08
    assert labels[6] == IGNORE
    first = labels.index(ANSWER)
    assert first == 7
    assert ends[first] >= 1.24 > ends[first - 1] and labels[first:] == [ANSWER] * 3
    assert chunk_labels(1.0, DialogueState.IGNORE, 0, settings)[-1] == STOP
    # both bounds are exact: chunk 0 ends at 0.08 + 0.08 (not listen), chunk 1 at 0.08 + 0.24
    assert chunk_labels(0.08, DialogueState.ANSWER, 0, settings) == [IGNORE, ANSWER]


def test_a_shorter_decide_after_moves_the_decision_earlier_with_no_gap():
    settings = TurnSettings(listen_margin=0.08, decide_after=0.08)
    # sound ends at 1.00 s: chunk 6 ends at 1.12, the first at or after 1.08, and decides
    assert chunk_labels(1.0, DialogueState.ANSWER, 1, settings) == [LISTEN] * 6 + [ANSWER] * 2
    with pytest.raises(ValueError, match="decide_after"):
        TurnSettings(listen_margin=0.08, decide_after=0.04)


def utterances(n_requests=10, n_fillers=3):
    return ([Utterance(f"q{i}.wav", f"question {i}", "question", 0.1, 1.0 + 0.1 * i) for i in range(n_requests)]
            + [Utterance(f"f{i}.wav", "um", "filler", 0.1, 0.4) for i in range(n_fillers)])


def test_plan_uses_every_request_once_and_ignored_turns_come_last():
    data = utterances()
    requests = list(range(10))
    settings = TurnSettings(max_turns=3, ignore_share=0.9)
    plan = plan_conversations(data, requests, seed=3, settings=settings)
    assert plan == plan_conversations(data, requests, seed=3, settings=settings)
    assert plan != plan_conversations(data, requests, seed=4, settings=settings)
    used = [t.utterance for conv in plan for t in conv if t.sound == "request"]
    assert sorted(used) == requests
    for conversation in plan:
        assert all(t.sound == "request" for t in conversation[:-1])
        assert 1 <= sum(t.sound == "request" for t in conversation) <= 3
    ignored = [conv[-1] for conv in plan if conv[-1].sound != "request"]
    assert ignored and all(t.label == DialogueState.IGNORE for t in ignored)
    for turn in ignored:
        if turn.sound == "fragment":  # cut inside the speech of a request
            u = data[turn.utterance]
            assert u.kind == "question" and u.speech_start < turn.sound_seconds < u.speech_end


@pytest.mark.parametrize("sound", ["request", "noise", "fragment"])
def test_turn_audio_is_quiet_around_the_sound(sound):
    speech = np.full(16000, 0.5, np.float32)
    turn = TurnPlan(sound, 0, lead=0.3, sound_seconds=0.5, extra=0, seed=1)
    audio = turn_audio(turn, speech, n_chunks=10)
    assert audio.shape == (10 * CHUNK_SAMPLES,) and audio.dtype == np.float32
    lead, body, tail = audio[:4800], audio[4800:12800], audio[12800:]
    assert 0 < np.abs(lead).max() < 1e-2 and 0 < np.abs(tail).max() < 1e-2  # a faint floor, never zeros
    assert np.abs(body).max() > 1e-2
    assert audio.tolist() == turn_audio(turn, speech, n_chunks=10).tolist()
