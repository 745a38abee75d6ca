import numpy as np
import pytest
from faster_whisper.feature_extractor import FeatureExtractor

from freeze_omni.audio.whisper_mel import (
    LOG_MEL_FLOOR,
    MelStream,
    WhisperMelConfig,
    log10_mel,
    log_mel,
    mel_filters,
)
from freeze_omni.errors import AudioError


def _speechlike(rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = int(16000 * seconds)
    t = np.arange(n) / 16000
    tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (tone + 0.02 * rng.standard_normal(n)).astype(np.float32)


def test_filterbank_matches_faster_whisper():
    ours = mel_filters(16000, 400, 80)
    theirs = FeatureExtractor.get_mel_filters(16000, 400, 80)
    assert ours.shape == (80, 201)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-8)


def test_spectra_match_faster_whisper_when_framed_the_same_way():
    """Whisper's features are ours on reflect-padded audio with Whisper's global scaling."""
    audio = _speechlike(np.random.default_rng(0), 2.0)
    theirs = FeatureExtractor()(audio, padding=160)
    padded = np.pad(np.pad(audio, (0, 160)), 200, mode="reflect")
    raw = log10_mel(padded)[:-1].T  # Whisper drops the last STFT frame
    ours = (np.maximum(raw, raw.max() - 8.0) + 4.0) / 4.0
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=2e-4)


def test_frames_are_causal_and_end_at_their_hop():
    cfg = WhisperMelConfig()
    audio = _speechlike(np.random.default_rng(1), 1.0)
    for n in (0, 159, 160, 399, 400, 559, 560, 2560, 16000):
        assert log_mel(audio[:n]).shape == (cfg.num_frames(n), 80) == (n // 160, 80)
    changed = audio.copy()
    changed[160 * 21:] = 0.0  # frame 20 covers samples [2960, 3360)
    np.testing.assert_array_equal(log_mel(changed)[:21], log_mel(audio)[:21])
    assert not np.allclose(log_mel(changed)[21], log_mel(audio)[21])


def test_fixed_floor_replaces_the_global_maximum():
    audio = _speechlike(np.random.default_rng(2), 1.0)
    audio[:4000] = 0.0
    feats = log_mel(audio)
    assert feats.min() == pytest.approx(LOG_MEL_FLOOR)
    np.testing.assert_array_equal(feats[:10], LOG_MEL_FLOOR)  # digital silence sits exactly on the floor
    louder = log_mel(audio * 2)  # a louder talker moves features, never the floor
    assert louder.min() == pytest.approx(LOG_MEL_FLOOR)
    assert louder.max() > feats.max()


@pytest.mark.parametrize("seed", range(4))
def test_stream_equals_offline_for_random_splits(seed):
    rng = np.random.default_rng(seed)
    audio = _speechlike(rng, rng.uniform(0.3, 3.0))
    offline = log_mel(audio)
    stream = MelStream()
    state = stream.initial_state()
    cuts = np.sort(rng.choice(np.arange(1, audio.size), size=rng.integers(1, 50), replace=False))
    chunks = []
    for piece in np.split(audio, cuts):
        out, state = stream.accept(piece, state)
        assert all(c.shape == (16, 80) for c in out)
        chunks += out
    tail, state = stream.flush(state)
    streamed = np.concatenate(chunks + ([tail] if tail is not None else []))
    assert streamed.shape == offline.shape
    assert np.abs(streamed - offline).max() < 1e-5
    assert state.frames_emitted == offline.shape[0]


def test_first_chunk_is_ready_when_its_audio_is():
    stream = MelStream()
    audio = _speechlike(np.random.default_rng(5), 1.0)
    needed = 160 * 16  # the chunk's own 160 ms, nothing of the next one
    chunks, state = stream.accept(audio[:needed - 1], stream.initial_state())
    assert chunks == []
    chunks, state = stream.accept(audio[needed - 1:needed], state)
    assert len(chunks) == 1


def test_bad_audio_is_refused():
    with pytest.raises(AudioError):
        log_mel(np.zeros((2, 400), dtype=np.float32))
    with pytest.raises(AudioError):
        MelStream().accept(np.zeros(400, dtype=np.int16), MelStream().initial_state())
