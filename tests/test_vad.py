import subprocess

import numpy as np
import pytest

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.io import read_audio
from freeze_omni.audio.vad import SpeechDetector, VadConfig, VadEvent, speech_segments
from freeze_omni.errors import AudioError

PAD_S = 1.0


@pytest.fixture(scope="module")
def detector() -> SpeechDetector:
    return SpeechDetector()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[np.ndarray, float, float]:
    """An espeak-ng sentence with 1 s of silence each side, and its true onset/offset in ms."""
    wav = tmp_path_factory.mktemp("vad") / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), "Turn the kitchen lights off, please."],
                   check=True, capture_output=True)
    speech = read_audio(wav)
    loud = np.flatnonzero(np.abs(speech) > 0.02)
    onset_ms = (PAD_S + loud[0] / SAMPLE_RATE) * 1000.0
    offset_ms = (PAD_S + loud[-1] / SAMPLE_RATE) * 1000.0
    pad = np.zeros(int(PAD_S * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([pad, speech, pad]), onset_ms, offset_ms


def _run(detector: SpeechDetector, audio: np.ndarray, piece_sizes: list[int] | None = None) -> list[VadEvent]:
    state, events, at = detector.initial_state(), [], 0
    for size in piece_sizes or [audio.size]:
        new, state = detector.accept(audio[at:at + size], state)
        events += new
        at += size
    assert at >= audio.size
    return events + detector.flush(state)[0]


def test_silence_and_low_noise_give_no_events(detector):
    assert _run(detector, np.zeros(3 * SAMPLE_RATE, dtype=np.float32)) == []
    noise = np.random.default_rng(0).normal(0, 0.001, 3 * SAMPLE_RATE).astype(np.float32)
    assert _run(detector, noise) == []


def test_one_segment_around_the_spoken_sentence(detector, clip):
    audio, onset_ms, offset_ms = clip
    events = _run(detector, audio)
    assert [e.kind for e in events] == ["start", "end"]
    start, end = events
    assert abs(start.t_ms - onset_ms) <= 150.0
    assert offset_ms - 150.0 <= end.t_ms <= offset_ms + 600.0
    assert start.sample == round(start.t_ms * SAMPLE_RATE / 1000)
    # The end is only decided after min_silence_ms of quiet, and before the stream is over.
    assert end.decided_sample - end.sample >= VadConfig().min_silence_ms * SAMPLE_RATE / 1000 - 512
    assert end.decided_sample <= audio.size


def test_voiced_until_marks_the_last_window_that_was_not_clearly_silent(detector, clip):
    """What the turn engine's drafts rely on: it ends near the offset, and silence never moves it."""
    audio, _, offset_ms = clip
    _, state = detector.accept(audio, detector.initial_state())
    assert offset_ms - 100.0 <= state.voiced_until * 1000 / SAMPLE_RATE <= offset_ms + 300.0
    assert state.voiced_until < state.samples_seen
    _, later = detector.accept(np.zeros(SAMPLE_RATE, np.float32), state)
    assert later.voiced_until == state.voiced_until


def test_any_piece_sizes_give_the_same_events(detector, clip):
    audio = clip[0]
    whole = _run(detector, audio)
    cuts = np.sort(np.random.default_rng(1).choice(np.arange(1, audio.size), size=300, replace=False))
    pieces = np.diff(np.concatenate([[0], cuts, [audio.size]])).tolist()
    assert min(pieces) < 512 < max(pieces)
    assert _run(detector, audio, pieces) == whole
    assert _run(detector, audio, [160] * (audio.size // 160 + 1)) == whole


def test_interleaved_streams_keep_separate_state(detector, clip):
    speech = clip[0]
    other = np.concatenate([np.zeros(SAMPLE_RATE // 2, dtype=np.float32), speech[: speech.size // 2] * 0.5])
    alone = [_run(detector, speech), _run(detector, other)]
    assert alone[0] != alone[1]
    streams = [speech, other]
    states = [detector.initial_state(), detector.initial_state()]
    events: list[list[VadEvent]] = [[], []]
    for at in range(0, max(a.size for a in streams), 1000):
        for k in (0, 1):
            new, states[k] = detector.accept(streams[k][at:at + 1000], states[k])
            events[k] += new
    for k in (0, 1):
        events[k] += detector.flush(states[k])[0]
    assert events == alone


def test_flush_closes_speech_cut_off_at_end_of_stream(detector, clip):
    audio, onset_ms, _ = clip
    cut = int((onset_ms + 800) * SAMPLE_RATE / 1000)
    events, state = detector.accept(audio[:cut], detector.initial_state())
    assert [e.kind for e in events] == ["start"]
    closing, state = detector.flush(state)
    assert [e.kind for e in closing] == ["end"] and closing[0].sample <= cut
    assert not state.in_speech


def test_speech_segments_offline(clip):
    audio = clip[0]
    segments = speech_segments(np.concatenate([audio, audio]))
    assert len(segments) == 2
    (start1, end1), (start2, end2) = segments
    assert start1 < end1 < start2 < end2
    assert abs((start2 - start1) - audio.size * 1000 / SAMPLE_RATE) <= 64
    # Bursts shorter than min_speech_ms never start a segment.
    assert speech_segments(audio, VadConfig(min_speech_ms=10_000.0)) == []


def test_rejects_integer_or_stereo_pcm(detector):
    with pytest.raises(AudioError, match="float"):
        detector.accept(np.zeros(512, dtype=np.int16), detector.initial_state())
    with pytest.raises(AudioError, match="mono"):
        detector.accept(np.zeros((512, 2), dtype=np.float32), detector.initial_state())


def test_probabilities_match_silero_own_wrapper(detector, clip):
    """Same input layout as Silero's OnnxWrapper (64 samples of context, [2, 1, 128] state)."""
    import torch
    from silero_vad.utils_vad import OnnxWrapper

    from freeze_omni.audio.vad import silero_model_path

    reference = OnnxWrapper(str(silero_model_path()), force_onnx_cpu=True)
    audio = clip[0][: 80 * 512]
    state, ours, theirs = detector.initial_state(), [], []
    for i in range(80):
        window = audio[i * 512:(i + 1) * 512]
        probability, state = detector.step(window, state)
        ours.append(probability)
        theirs.append(reference(torch.from_numpy(window.copy()), SAMPLE_RATE).item())
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert max(ours) > 0.9 and min(ours) < 0.1
