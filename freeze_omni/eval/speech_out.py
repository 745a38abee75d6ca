"""Intelligibility of the system's speech: the reference ASR on what the decoder says vs its text.

Shared by `freeze-omni eval speech-out` and the decoder training stages (their held-out WER).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import numpy as np
from tqdm import tqdm

from freeze_omni.audio import SAMPLE_RATE as RATE_16K
from freeze_omni.audio.io import resample
from freeze_omni.codec.piper_latent import SAMPLE_RATE
from freeze_omni.eval import reference_asr
from freeze_omni.eval.metrics import error_rates

# text -> (index, text) -> 22.05 kHz audio
Speak = Callable[[int, str], np.ndarray]


def speech_wer(texts: Sequence[str], speak: Speak, threads: int | None = None,
               desc: str = "speech-out") -> dict:
    """WER/CER of the reference ASR on `speak(i, text)` for every text, with the transcripts."""
    hypotheses = []
    audio_seconds = 0.0
    for i, text in enumerate(tqdm(texts, desc=desc, unit="text", file=sys.stderr, disable=None, mininterval=5)):
        audio = speak(i, text)
        audio_seconds += len(audio) / SAMPLE_RATE
        hypotheses.append(reference_asr.transcribe(resample(audio, SAMPLE_RATE, RATE_16K), threads))
    rates = error_rates(list(texts), hypotheses)
    return {"wer": rates.wer, "cer": rates.cer, "n": rates.n, "audio_seconds": round(audio_seconds, 1),
            "hypotheses": hypotheses}
