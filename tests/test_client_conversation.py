import numpy as np

from freeze_omni.audio.io import float_to_pcm16
from freeze_omni.audio.quiet import QUIET_DBFS, noise_floor
from freeze_omni.client import CHUNK_SAMPLES, Conversation, Received, quiet_tail


def pcm(values: list[int]) -> bytes:
    return np.array(values, "<i2").tobytes()


def test_audio_is_what_a_listener_heard_across_a_pause_and_resume():
    conversation = Conversation(received=[
        Received(0.0, {"type": "answer_started", "t_ms": 0.0, "speech_end_ms": 0.0}),
        Received(0.1, pcm([1, 2, 3, 4])),
        Received(0.2, pcm([5, 6])),
        Received(0.3, {"type": "answer_paused", "t_ms": 100.0, "unplayed_samples": 3}),  # 4, 5, 6 unheard
        Received(0.4, {"type": "answer_resumed", "t_ms": 300.0}),
        Received(0.5, pcm([4, 5, 6, 7])),
    ])
    assert (conversation.audio * 32768).round().astype(int).tolist() == [1, 2, 3, 4, 5, 6, 7]


def test_the_tail_after_a_recording_is_whole_chunks_of_a_faint_floor_the_same_each_time():
    tail = quiet_tail(1.0)
    assert tail.size == 6 * CHUNK_SAMPLES  # whole 160 ms chunks, never more than asked
    np.testing.assert_array_equal(tail, quiet_tail(1.0))  # an offline reference hears the same samples
    wire = float_to_pcm16(tail)
    assert np.count_nonzero(wire) > 0.9 * wire.size  # still a floor, not zeros, after PCM16
    level = 10 * np.log10(np.mean(np.square(tail, dtype=np.float64)))
    assert abs(level - QUIET_DBFS) < 0.5


def test_a_noise_floor_has_the_level_asked_for():
    for level in (-75.0, -50.0):
        floor = noise_floor(32000, level, np.random.default_rng(1))
        assert floor.dtype == np.float32
        assert abs(10 * np.log10(np.mean(np.square(floor, dtype=np.float64))) - level) < 0.2
