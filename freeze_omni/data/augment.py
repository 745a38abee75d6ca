"""Waveform transforms for the corpus: level, silence, speed, reverb, noise, gain.

Synthetic voices are too clean and too alike; an encoder trained on them alone learns the
synthesizer's fingerprint. Each utterance is stored once, either clean (about 30 %) or through a
random chain of these transforms, and the chain is recorded in the manifest. All functions are
pure numpy (plus the project's resampler) and take an explicit `numpy.random.Generator`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.io import resample

REFERENCE_DBFS = -24.0  # every utterance is first brought to this RMS level
PEAK_LIMIT = 0.99
_EPS = 1e-12


def rms_db(audio: np.ndarray) -> float:
    """RMS level in dB relative to full scale."""
    return float(10 * np.log10(np.mean(np.square(audio, dtype=np.float64)) + _EPS))


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    return (audio * np.float32(10 ** (gain_db / 20))).astype(np.float32)


def normalize_level(audio: np.ndarray, target_dbfs: float = REFERENCE_DBFS) -> np.ndarray:
    """Same loudness for every engine (espeak is quiet, Piper peaks at full scale)."""
    return apply_gain(audio, target_dbfs - rms_db(audio)) if audio.size else audio


def limit_peak(audio: np.ndarray, peak: float = PEAK_LIMIT) -> np.ndarray:
    """Scale down (never clip) if any sample would exceed `peak`."""
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio * np.float32(peak / top)).astype(np.float32) if top > peak else audio


def trim_silence(audio: np.ndarray, sr: int = SAMPLE_RATE, threshold_db: float = -40.0,
                 margin: float = 0.05) -> np.ndarray:
    """Cut leading and trailing frames quieter than `threshold_db` below the loudest 10 ms frame.

    Engines differ in how much silence they leave; trimming and re-padding makes every
    utterance's speech boundaries comparable.
    """
    frame = max(1, sr // 100)
    frames = len(audio) // frame
    if frames == 0:
        return audio
    energy = np.square(audio[: frames * frame].reshape(frames, frame), dtype=np.float64).mean(axis=1)
    loud = np.flatnonzero(10 * np.log10(energy + _EPS) > 10 * np.log10(energy.max() + _EPS) + threshold_db)
    start = max(0, loud[0] * frame - int(margin * sr))
    end = min(len(audio), (loud[-1] + 1) * frame + int(margin * sr))
    return audio[start:end]


def pad_silence(audio: np.ndarray, before: float, after: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    return np.concatenate([
        np.zeros(int(before * sr), np.float32), audio.astype(np.float32), np.zeros(int(after * sr), np.float32)
    ])


def change_speed(audio: np.ndarray, factor: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Play `factor` times faster by resampling: duration / factor, pitch shifts with it."""
    return resample(audio, int(round(sr * factor)), sr)


def white_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(length).astype(np.float32)


def pink_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped by 1/sqrt(f) in the frequency domain, unit variance."""
    if length < 2:
        return white_noise(length, rng)
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=length)
    return (noise / (noise.std() + _EPS)).astype(np.float32)


NOISES = {"white": white_noise, "pink": pink_noise}


def add_noise(audio: np.ndarray, snr_db: float, noise: np.ndarray) -> np.ndarray:
    """Mix in `noise` scaled so that signal power / noise power is exactly `snr_db`.

    Power is the mean over the whole utterance (padding included), so the SNR is that of the file.
    """
    signal_power = np.mean(np.square(audio, dtype=np.float64))
    noise_power = np.mean(np.square(noise, dtype=np.float64)) + _EPS
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (audio + scale * noise).astype(np.float32)


def room_impulse_response(rt60: float, drr_db: float, rng: np.random.Generator,
                          sr: int = SAMPLE_RATE) -> np.ndarray:
    """A synthetic room: a direct path, then exponentially decaying noise (-60 dB after `rt60`).

    `drr_db` is the direct-to-reverberant energy ratio: small values sound far from the mic.
    """
    length = max(2, int(rt60 * sr))
    t = np.arange(1, length) / sr
    tail = rng.standard_normal(length - 1) * np.exp(-6.908 * t / rt60)
    tail *= np.sqrt(10 ** (-drr_db / 10) / (np.sum(tail**2) + _EPS))
    return np.concatenate([[1.0], tail]).astype(np.float32)


def reverb(audio: np.ndarray, impulse: np.ndarray) -> np.ndarray:
    """Convolve with a room response (FFT), keep the original length and loudness."""
    if audio.size == 0:
        return audio
    n = audio.size + impulse.size - 1
    size = 1 << (n - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(impulse, size), size)[: audio.size]
    return apply_gain(wet.astype(np.float32), rms_db(audio) - rms_db(wet))


@dataclass(frozen=True)
class Augmentation:
    """One utterance's chain; None fields are steps not taken. All None = clean."""

    speed: float | None = None
    reverb_rt60: float | None = None
    reverb_drr_db: float | None = None
    noise: str | None = None
    snr_db: float | None = None
    gain_db: float | None = None

    def describe(self) -> dict[str, float | str]:
        """The manifest's `augment` field: the steps taken ({} for a clean utterance)."""
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class AugmentPolicy:
    clean_probability: float = 0.3
    speed_probability: float = 0.5
    speed_range: tuple[float, float] = (0.9, 1.1)
    reverb_probability: float = 0.35
    rt60_range: tuple[float, float] = (0.2, 0.8)
    drr_range: tuple[float, float] = (0.0, 12.0)
    noise_probability: float = 0.75
    snr_range: tuple[float, float] = (5.0, 30.0)
    gain_range: tuple[float, float] = (-12.0, 6.0)


def sample_augmentation(rng: np.random.Generator, policy: AugmentPolicy = AugmentPolicy()) -> Augmentation:
    if rng.random() < policy.clean_probability:
        return Augmentation()

    def maybe(probability: float, low: float, high: float, digits: int = 2) -> float | None:
        return round(float(rng.uniform(low, high)), digits) if rng.random() < probability else None

    speed = maybe(policy.speed_probability, *policy.speed_range, digits=3)
    rt60 = maybe(policy.reverb_probability, *policy.rt60_range)
    snr = maybe(policy.noise_probability, *policy.snr_range, digits=1)
    return Augmentation(
        speed=speed,
        reverb_rt60=rt60,
        reverb_drr_db=round(float(rng.uniform(*policy.drr_range)), 1) if rt60 else None,
        noise=str(rng.choice(list(NOISES))) if snr is not None else None,
        snr_db=snr,
        gain_db=round(float(rng.uniform(*policy.gain_range)), 1),
    )


def apply_speed(audio: np.ndarray, augmentation: Augmentation, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The speed step alone: it comes before padding so that silences keep their length."""
    return change_speed(audio, augmentation.speed, sr) if augmentation.speed else audio


def apply_room_and_noise(audio: np.ndarray, augmentation: Augmentation, rng: np.random.Generator,
                         sr: int = SAMPLE_RATE) -> tuple[np.ndarray, Augmentation]:
    """Reverb, noise, gain, then peak limiting.

    Returns the audio and the augmentation with the gain actually applied (limiting may lower it).
    """
    if augmentation.reverb_rt60:
        audio = reverb(audio, room_impulse_response(augmentation.reverb_rt60, augmentation.reverb_drr_db or 0.0, rng, sr))
    if augmentation.noise and augmentation.snr_db is not None:
        audio = add_noise(audio, augmentation.snr_db, NOISES[augmentation.noise](audio.size, rng))
    if augmentation.gain_db is not None:
        before = rms_db(audio)
        audio = limit_peak(apply_gain(audio, augmentation.gain_db))
        effective = round(rms_db(audio) - before, 1)
        augmentation = replace(augmentation, gain_db=effective)
    return limit_peak(audio), augmentation
