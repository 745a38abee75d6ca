import numpy as np
import pytest

from freeze_omni.audio.features import FbankConfig, FeatureStream, fbank
from freeze_omni.errors import AudioError


def _random_audio(rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = int(16000 * seconds)
    t = np.arange(n) / 16000
    tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t)
    return (tone + 0.05 * rng.standard_normal(n)).astype(np.float32)


def test_one_frame_per_complete_hop():
    cfg = FbankConfig()
    for n in (0, 159, 160, 399, 400, 2560, 16000, 16321):
        feats = fbank(np.zeros(n, dtype=np.float32) + 0.01, cfg)
        assert feats.shape == (n // 160, 80)


def test_tone_energy_lands_in_the_right_mel_bin():
    t = np.arange(16000) / 16000
    low = fbank((0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)).mean(0)
    high = fbank((0.5 * np.sin(2 * np.pi * 4000 * t)).astype(np.float32)).mean(0)
    assert low.argmax() < 20 < high.argmax()


@pytest.mark.parametrize("seed", range(5))
def test_stream_equals_offline_for_random_splits(seed):
    rng = np.random.default_rng(seed)
    audio = _random_audio(rng, rng.uniform(0.5, 3.0))
    offline = fbank(audio)
    stream = FeatureStream()
    state = stream.initial_state()
    cuts = np.sort(rng.choice(np.arange(1, audio.size), size=rng.integers(1, 40), replace=False))
    chunks = []
    for piece in np.split(audio, cuts):
        out, state = stream.accept(piece, state)
        chunks += out
        assert all(c.shape == (16, 80) for c in out)
    tail, state = stream.flush(state)
    streamed = np.concatenate(chunks + ([tail] if tail is not None else []))
    assert streamed.shape == offline.shape
    np.testing.assert_allclose(streamed, offline, atol=1e-4, rtol=0)
    assert state.frames_emitted == offline.shape[0]


def test_empty_pieces_and_states_are_independent():
    rng = np.random.default_rng(7)
    a, b = _random_audio(rng, 1.0), _random_audio(rng, 1.0)
    stream = FeatureStream()
    sa, sb = stream.initial_state(), stream.initial_state()
    out_a, out_b = [], []
    for i in range(0, 16000, 1000):
        chunks, sa = stream.accept(a[i:i + 1000], sa)
        out_a += chunks
        _, sb = stream.accept(np.zeros(0, dtype=np.float32), sb)
        chunks, sb = stream.accept(b[i:i + 1000], sb)
        out_b += chunks
    np.testing.assert_allclose(np.concatenate(out_a), fbank(a)[: 16 * len(out_a)], atol=1e-4)
    np.testing.assert_allclose(np.concatenate(out_b), fbank(b)[: 16 * len(out_b)], atol=1e-4)


def test_rejects_non_float_or_multichannel_input():
    stream = FeatureStream()
    with pytest.raises(AudioError):
        stream.accept(np.zeros(100, dtype=np.int16), stream.initial_state())
    with pytest.raises(AudioError):
        fbank(np.zeros((100, 2), dtype=np.float32))
