import numpy as np
import pytest
import soundfile as sf

from freeze_omni.audio.io import pcm_to_float, read_audio, write_wav
from freeze_omni.errors import AudioError


def _tone(sr: int, seconds: float = 0.5, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(("sr", "subtype", "fmt"), [
    (16000, "PCM_16", "WAV"), (44100, "PCM_24", "WAV"), (8000, "PCM_U8", "WAV"),
    (48000, "FLOAT", "WAV"), (22050, "PCM_16", "FLAC"), (32000, "PCM_32", "WAV"),
])
def test_any_rate_and_width_becomes_16k_mono_float(tmp_path, sr, subtype, fmt):
    stereo = np.stack([_tone(sr), _tone(sr)], axis=1)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, stereo, sr, subtype=subtype, format=fmt)
    audio = read_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - 8000) <= 2
    # Same tone after resampling: the dominant frequency stays at 440 Hz.
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(spectrum.argmax() * 16000 / audio.size - 440) < 5
    assert 0.4 < np.abs(audio).max() < 0.55


def test_raw_pcm_needs_its_rate_and_matches_wav(tmp_path):
    tone = _tone(16000)
    pcm = (tone * 32767).astype("<i2")
    (tmp_path / "a.pcm").write_bytes(pcm.tobytes())
    with pytest.raises(AudioError, match="sample rate"):
        read_audio(tmp_path / "a.pcm")
    audio = read_audio(tmp_path / "a.pcm", pcm_sample_rate=16000)
    np.testing.assert_allclose(audio, tone, atol=1e-4)
    np.testing.assert_allclose(pcm_to_float(pcm.tobytes()), tone, atol=1e-4)


def test_write_then_read_round_trip(tmp_path):
    tone = _tone(16000)
    write_wav(tmp_path / "sub" / "x.wav", tone)
    np.testing.assert_allclose(read_audio(tmp_path / "sub" / "x.wav"), tone, atol=1e-4)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.wav", None, "no such file"),
    ("empty.wav", b"", "empty"),
    ("text.wav", b"this is not audio at all, just words" * 10, "not a readable audio file"),
])
def test_bad_files_raise_audio_error(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(AudioError, match=message):
        read_audio(tmp_path / name)


def test_truncated_and_zero_length_wav(tmp_path):
    write_wav(tmp_path / "full.wav", _tone(16000))
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated"):
        read_audio(tmp_path / "cut.wav")
    write_wav(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="no audio samples"):
        read_audio(tmp_path / "zero.wav")
    with pytest.raises(AudioError, match="whole number"):
        pcm_to_float(b"\x00\x01\x02")
