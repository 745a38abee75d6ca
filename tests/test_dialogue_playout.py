import math

import numpy as np
import pytest

from freeze_omni.dialogue.playout import Playout


def packet(ms: float, value: float = 0.0) -> np.ndarray:
    return np.full(int(ms * 16), value, np.float32)


def test_tokens_are_heard_in_proportion_to_their_phrase_audio():
    playout = Playout()
    playout.add_phrase(4, now_ms=1000.0)
    for _ in range(4):
        playout.add_packet(packet(100), 16000, now_ms=1000.0)  # 100 ms each, queued back to back
    playout.complete_phrase()
    assert playout.end_ms == 1400.0
    times = (999.0, 1000.0, 1099.0, 1100.0, 1250.0, 1400.0, 5000.0)
    assert [playout.said_tokens(t) for t in times] == [0, 0, 0, 1, 2, 4, 4]


def test_a_packet_made_late_plays_from_when_it_was_made():
    playout = Playout()
    playout.add_phrase(2, now_ms=0.0)
    playout.add_packet(packet(100), 16000, now_ms=0.0)
    playout.add_packet(packet(100), 16000, now_ms=500.0)  # underrun: silence from 100 to 500 ms
    playout.complete_phrase()
    assert [(p.start_ms, p.end_ms) for p in playout.phrases[0].packets] == [(0.0, 100.0), (500.0, 600.0)]
    assert playout.said_tokens(300.0) == 1
    assert playout.said_tokens(600.0) == 2


def test_text_only_phrases_count_when_shown():
    playout = Playout()
    playout.add_phrase(3, now_ms=200.0)
    assert playout.said_tokens(1000.0) == 0  # not complete: its (possible) audio is still coming
    playout.complete_phrase()
    playout.add_phrase(5, now_ms=400.0)
    playout.complete_phrase()
    assert [playout.said_tokens(t) for t in (100.0, 200.0, 399.0, 400.0)] == [0, 3, 3, 8]
    assert playout.end_ms == 400.0


def test_an_empty_playout_has_ended_before_anything():
    playout = Playout()
    assert playout.end_ms == -math.inf and playout.complete and playout.said_tokens(0.0) == 0


def test_a_phrase_cannot_start_before_the_previous_one_is_synthesised():
    playout = Playout()
    playout.add_phrase(1, now_ms=0.0)
    with pytest.raises(RuntimeError):
        playout.add_phrase(1, now_ms=0.0)


def test_a_pause_holds_back_the_unheard_audio_and_resume_sends_it_again_later():
    playout = Playout()
    playout.add_phrase(4, now_ms=0.0)
    for i in range(4):
        playout.add_packet(packet(100, value=i), 16000, now_ms=0.0)  # plays 0-400 ms
    playout.complete_phrase()
    assert playout.pause(150.0) == 250 * 16  # half of packet 1 and packets 2, 3 were not heard
    assert playout.said_tokens(5000.0) == 1  # nothing plays while paused
    with pytest.raises(RuntimeError):
        playout.add_packet(packet(100), 16000, now_ms=200.0)
    resent = playout.resume(1000.0)
    assert resent.size == 250 * 16
    np.testing.assert_array_equal(resent, np.concatenate([packet(50, 1), packet(100, 2), packet(100, 3)]))
    spans = [(p.start_ms, p.end_ms) for p in playout.phrases[0].packets]
    assert spans == [(0.0, 100.0), (100.0, 150.0), (1000.0, 1050.0), (1050.0, 1150.0), (1150.0, 1250.0)]
    assert playout.end_ms == 1250.0
    assert [playout.said_tokens(t) for t in (149.0, 999.0, 1050.0, 1250.0)] == [1, 1, 2, 4]


def test_a_pause_after_everything_played_resends_nothing():
    playout = Playout()
    playout.add_phrase(1, now_ms=0.0)
    playout.add_packet(packet(100), 16000, now_ms=0.0)
    playout.complete_phrase()
    assert playout.pause(300.0) == 0
    assert playout.resume(400.0).size == 0 and playout.end_ms == 100.0
