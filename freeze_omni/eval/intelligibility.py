"""Intelligibility of a set of recordings: reference-ASR transcripts scored against their texts.

This is the "source WER" of a corpus or recording set: the floor that any figure measured
through the same reference ASR (e.g. the system's own speech) should be compared with.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.io import read_audio
from freeze_omni.errors import AudioError, FreezeOmniError
from freeze_omni.eval import reference_asr
from freeze_omni.eval.manifest import by_voice, evenly_spaced, read_speech_manifest
from freeze_omni.eval.metrics import error_rates


def evaluate_manifest(manifest: str | Path, limit: int | None = None, threads: int | None = None) -> dict[str, Any]:
    """Transcribe every utterance of a speech manifest and score it (the REPORTS.md keys)."""
    items = evenly_spaced(read_speech_manifest(manifest), limit)
    reference_asr.load_model(threads)  # outside the timed loop: rtf is steady-state decoding
    hypotheses: list[str] = []
    audio_s = asr_s = 0.0
    for item in tqdm(items, desc="reference ASR", unit="utt", file=sys.stderr, disable=None):
        try:
            audio = read_audio(item.audio)
        except AudioError as err:
            raise FreezeOmniError(f"{manifest}:{item.line}: {err}") from None
        start = time.perf_counter()
        hypotheses.append(reference_asr.transcribe(audio, threads))
        asr_s += time.perf_counter() - start
        audio_s += audio.size / SAMPLE_RATE
    rates = error_rates([item.text for item in items], hypotheses)
    return {
        "wer": rates.wer,
        "cer": rates.cer,
        "rtf": asr_s / audio_s,
        "n": rates.n,
        "words": rates.words,
        "substitutions": rates.substitutions,
        "deletions": rates.deletions,
        "insertions": rates.insertions,
        "audio_ms": round(audio_s * 1000.0, 1),
        "ms_per_utterance": round(asr_s * 1000.0 / rates.n, 1),
        "model": reference_asr.MODEL_NAME,
        "manifest": str(manifest),
        "utterances": [
            {"audio": item.audio_as_written, "reference": item.text, "hypothesis": hyp,
             "wer": utt.wer, "cer": utt.cer}
            for item, hyp, utt in zip(items, hypotheses, rates.utterances)
        ],
        **by_voice(items, rates),
    }
