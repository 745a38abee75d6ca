import numpy as np

from freeze_omni.client import Conversation, Received


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
