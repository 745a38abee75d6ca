"""Augmentation properties: each transform does what its name promises, and only that."""

import numpy as np
import pytest

from freeze_omni.data import augment
from freeze_omni.data.augment import Augmentation, AugmentPolicy

SR = 16000


def tone_speech(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: a modulated harmonic tone with quiet gaps."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    voice = sum(np.sin(2 * np.pi * 140 * k * t + rng.uniform(0, 6)) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None)
    return (0.2 * voice * envelope).astype(np.float32)


def measured_snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy.astype(np.float64) - clean
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2))


@pytest.mark.parametrize("color", ["white", "pink"])
@pytest.mark.parametrize("snr_db", [5.0, 12.5, 30.0])
def test_added_noise_has_the_requested_snr(color, snr_db):
    clean = tone_speech()
    rng = np.random.default_rng(1)
    noisy = augment.add_noise(clean, snr_db, augment.NOISES[color](clean.size, rng))
    assert abs(measured_snr(clean, noisy) - snr_db) < 0.5
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape


def test_pink_noise_falls_about_3_db_per_octave():
    noise = augment.pink_noise(SR * 8, np.random.default_rng(2))
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(noise.size, 1 / SR)
    bands = [(f, 2 * f) for f in (125, 250, 500, 1000, 2000, 4000)]
    levels = [10 * np.log10(power[(freqs >= lo) & (freqs < hi)].mean()) for lo, hi in bands]
    slope = np.polyfit(np.arange(len(levels)), levels, 1)[0]
    assert -3.8 < slope < -2.2  # 1/f: -3 dB per octave; white noise would be 0
    assert abs(noise.std() - 1.0) < 1e-3


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_duration_by_the_factor(factor):
    audio = tone_speech(3.0)
    faster = augment.change_speed(audio, factor)
    assert faster.size / audio.size == pytest.approx(1 / factor, rel=0.002)


def test_gain_scales_the_level_exactly():
    audio = tone_speech()
    for gain in (-12.0, -3.0, 4.5):
        assert augment.rms_db(augment.apply_gain(audio, gain)) - augment.rms_db(audio) == pytest.approx(gain, abs=0.01)


def test_normalize_level_and_peak_limit():
    loud = tone_speech() * 4
    assert augment.rms_db(augment.normalize_level(loud)) == pytest.approx(augment.REFERENCE_DBFS, abs=0.01)
    limited = augment.limit_peak(loud)
    assert np.max(np.abs(limited)) == pytest.approx(augment.PEAK_LIMIT, abs=1e-4)
    assert np.corrcoef(limited, loud)[0, 1] > 0.9999  # scaled, not clipped


def test_reverb_keeps_length_level_and_adds_a_tail():
    audio = tone_speech()
    impulse = augment.room_impulse_response(0.6, 3.0, np.random.default_rng(3))
    wet = augment.reverb(audio, impulse)
    assert wet.shape == audio.shape and np.isfinite(wet).all()
    assert augment.rms_db(wet) == pytest.approx(augment.rms_db(audio), abs=0.01)
    silent_gap = (np.arange(audio.size) > SR * 0.21) & (np.arange(audio.size) < SR * 0.25)
    assert np.all(audio[silent_gap] == 0)
    assert np.abs(wet[silent_gap]).max() > 1e-3  # the room keeps ringing into the pause
    decay_60db = impulse[1:] ** 2
    head, tail = decay_60db[: 800].mean(), decay_60db[-800:].mean()
    assert 10 * np.log10(head / tail) > 40


def test_trim_silence_keeps_the_speech_and_drops_the_padding():
    speech = tone_speech(1.0)[SR // 10 : SR // 10 + SR // 6]  # one voiced burst
    padded = augment.pad_silence(speech, 0.5, 0.7)
    trimmed = augment.trim_silence(padded, margin=0.05)
    assert speech.size <= trimmed.size <= speech.size + int(0.12 * SR)


def test_sampled_chains_respect_the_policy_and_the_seed():
    policy = AugmentPolicy()
    chains = [augment.sample_augmentation(np.random.default_rng(i), policy) for i in range(1500)]
    assert chains == [augment.sample_augmentation(np.random.default_rng(i), policy) for i in range(1500)]
    clean = sum(c == Augmentation() for c in chains) / len(chains)
    assert 0.25 < clean < 0.35
    for chain in chains:
        if chain.speed is not None:
            assert 0.9 <= chain.speed <= 1.1
        if chain.snr_db is not None:
            assert 5 <= chain.snr_db <= 30 and chain.noise in augment.NOISES
    assert Augmentation().describe() == {}


def test_room_and_noise_chain_records_the_gain_it_really_applied():
    audio = augment.normalize_level(tone_speech())
    chain = Augmentation(reverb_rt60=0.4, reverb_drr_db=6.0, noise="pink", snr_db=10.0, gain_db=30.0)
    out, applied = augment.apply_room_and_noise(audio, chain, np.random.default_rng(4))
    assert np.max(np.abs(out)) <= augment.PEAK_LIMIT + 1e-6
    assert applied.gain_db < 30.0  # the limiter took some of the requested gain back
    assert applied.describe()["noise"] == "pink"
