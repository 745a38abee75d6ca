"""Read any WAV/FLAC/raw PCM into 16 kHz mono float32; write PCM16 WAV.

Everything past this module sees one format (float32 in [-1, 1], mono, 16 kHz), so the rest of the
system never has to care what a file or a microphone delivered.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.errors import AudioError

RAW_PCM_SUFFIXES = {".pcm", ".raw", ".s16", ".s16le"}
_PCM_DTYPES = {"int16": np.int16, "int32": np.int32, "float32": np.float32, "uint8": np.uint8}


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (soxr, high quality); a no-op when the rates agree."""
    if orig_sr <= 0 or target_sr <= 0:
        raise AudioError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    audio = np.asarray(audio, dtype=np.float32)
    if orig_sr == target_sr or audio.size == 0:
        return audio
    return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average channels: [samples, channels] -> [samples]."""
    return audio if audio.ndim == 1 else audio.mean(axis=1, dtype=np.float32)


def pcm_to_float(pcm: bytes | np.ndarray, dtype: str = "int16", channels: int = 1) -> np.ndarray:
    """Raw interleaved PCM samples -> float32 mono in [-1, 1]."""
    if dtype not in _PCM_DTYPES:
        raise AudioError(f"unsupported PCM sample type {dtype!r}; use one of {sorted(_PCM_DTYPES)}")
    np_dtype = np.dtype(_PCM_DTYPES[dtype]).newbyteorder("<")
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        if len(pcm) % (np_dtype.itemsize * channels):
            raise AudioError(
                f"PCM data of {len(pcm)} bytes is not a whole number of {dtype} x {channels} frames"
            )
        samples = np.frombuffer(pcm, dtype=np_dtype)
    else:
        samples = np.asarray(pcm)
    if samples.dtype.kind == "f":
        audio = samples.astype(np.float32)
    elif samples.dtype == np.uint8:
        audio = (samples.astype(np.float32) - 128.0) / 128.0
    else:
        audio = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
    return to_mono(audio.reshape(-1, channels)) if channels > 1 else audio


def read_audio(
    path: str | Path,
    target_sr: int = SAMPLE_RATE,
    pcm_sample_rate: int | None = None,
    pcm_dtype: str = "int16",
    pcm_channels: int = 1,
) -> np.ndarray:
    """Read a WAV/FLAC/OGG file (any rate and sample width) or a raw PCM file -> float32 mono.

    Raw PCM (`.pcm`, `.raw`, `.s16`) carries no header, so its rate must be given.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty")
    if path.suffix.lower() in RAW_PCM_SUFFIXES:
        if pcm_sample_rate is None:
            raise AudioError(f"{path}: raw PCM has no header; give its sample rate")
        audio = pcm_to_float(path.read_bytes(), pcm_dtype, pcm_channels)
        sr = pcm_sample_rate
    else:
        audio, sr = _read_with_header(path)
    if audio.size == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return resample(audio, sr, target_sr)


def _read_with_header(path: Path) -> tuple[np.ndarray, int]:
    if shortfall := _wav_data_shortfall(path):
        declared, found = shortfall
        raise AudioError(f"{path}: truncated (header declares {declared} data bytes, file holds {found})")
    try:
        info = sf.info(str(path))
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as err:
        raise AudioError(f"{path}: not a readable audio file ({err.error_string})") from None
    except (RuntimeError, ValueError) as err:
        raise AudioError(f"{path}: not a readable audio file ({err})") from None
    if info.frames > 0 and audio.shape[0] < info.frames:
        raise AudioError(f"{path}: truncated (header says {info.frames} frames, found {audio.shape[0]})")
    return to_mono(audio), sr


def _wav_data_shortfall(path: Path) -> tuple[int, int] | None:
    """(declared, present) data bytes of a RIFF/WAVE file cut short, else None.

    libsndfile silently shortens such files; a cut-off copy or upload should be reported instead.
    Sizes 0 and 0xFFFFFFFF mean "unknown" (streaming writers) and are accepted.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, length = f.read(4), int.from_bytes(f.read(4), "little")
            if chunk_id == b"data":
                present = size - pos - 8
                unknown = length in (0, 0xFFFFFFFF)
                return (length, present) if not unknown and length > present else None
            pos += 8 + length + (length & 1)
    return None


def float_to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float32 [-1, 1] -> int16, clipping instead of wrapping around."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono float audio as a PCM16 WAV, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), float_to_pcm16(np.asarray(audio, dtype=np.float32)), sample_rate, subtype="PCM_16")
