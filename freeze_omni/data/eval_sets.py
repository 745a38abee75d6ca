"""Evaluation sets for issue #8: an unseen synthesizer (clean and at 10 dB SNR) and human speech.

`freeze-omni data eval-sets` writes, into one folder (default `$FREEZE_OMNI_DATA/eval-sets`):

- `unseen-synth-clean.jsonl`: CMU Flite (`flite.py`), which no training stage ever hears, speaking
  held-out test sentences of the default corpus, five voices in turn;
- `unseen-synth-10db.jsonl`: the same audio with white or pink noise at exactly 10 dB SNR;
- `human.jsonl`: real recordings shipped in a Debian package (`human.py`);
- `eval-sets.json`: what was built, from what, and how the SNR is defined.

Every file is 16 kHz mono PCM16, paths in the manifests are relative to the folder, and the rows
carry the fields `eval asr` and `eval reference-asr` read (`audio`, `text`) plus their provenance.

SNR is measured on the speech's active part, not on the whole file: speech power is the mean power
between the first and last 10 ms frame within 40 dB of the loudest one (the span `trim_silence`
keeps, 50 ms margins included, pauses between words included), noise power is its mean over the
whole file. The file-wide figure would depend on how much silence pads the utterance, which says
nothing about how hard the speech is to hear. The clean and noisy files share one gain, so a
reader can recover the noise as their difference and check the figure (a test does).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.io import read_audio, write_wav
from freeze_omni.data import CorpusError, augment, flite
from freeze_omni.data.human import HumanRecording, pocketsphinx_recordings
from freeze_omni.data.plan import text_split
from freeze_omni.data.texts import TextItem, default_texts
from freeze_omni.paths import data_dir, write_atomic

DEFAULT_SNR_DB = 10.0
DEFAULT_LIMIT = 100
PAD_SECONDS = 0.3  # silence before and after every unseen-synth utterance
MIN_SPEECH_SECONDS = 0.15
CLEAN_SET = "unseen-synth-clean"
HUMAN_SET = "human"
SUMMARY = "eval-sets.json"
SNR_DEFINITION = ("speech power: mean over the active span (first to last 10 ms frame within 40 dB of the "
                  "loudest, 50 ms margins); noise power: mean over the whole file")
_EPS = 1e-20


def default_eval_dir() -> Path:
    return data_dir() / "eval-sets"


def noisy_set_name(snr_db: float) -> str:
    """`unseen-synth-10db` for 10 dB (the manifest and folder name)."""
    return f"unseen-synth-{snr_db:g}db"


@dataclass(frozen=True)
class EvalSetsConfig:
    out_dir: Path = field(default_factory=default_eval_dir)
    limit: int = DEFAULT_LIMIT  # test sentences spoken by the unseen synthesizer
    snr_db: float = DEFAULT_SNR_DB
    seed: int = 0  # which test sentences, which noise
    texts: tuple[TextItem, ...] | None = None  # None: the default corpus's test split
    human: bool = True


# --- noise at an exact SNR --------------------------------------------------------------------


def active_snr_db(clean: np.ndarray, noise: np.ndarray, span: tuple[int, int]) -> float:
    """SNR as defined above: power of `clean[span]` over the power of `noise` (whole length)."""
    speech = clean[span[0]: span[1]].astype(np.float64)
    return float(10 * np.log10(np.mean(speech**2) / (np.mean(noise.astype(np.float64) ** 2) + _EPS)))


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float, span: tuple[int, int]) -> np.ndarray:
    """`clean + g * noise` with g chosen so that `active_snr_db` is exactly `snr_db`."""
    if noise.shape != clean.shape:
        raise ValueError(f"noise has {noise.shape} samples, speech {clean.shape}")
    if span[1] <= span[0]:
        raise ValueError("no active speech to measure the SNR against")
    speech_power = np.mean(clean[span[0]: span[1]].astype(np.float64) ** 2)
    noise_power = np.mean(noise.astype(np.float64) ** 2) + _EPS
    gain = np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    return (clean.astype(np.float64) + gain * noise).astype(np.float32)


def shared_peak_gain(*signals: np.ndarray, peak: float = augment.PEAK_LIMIT) -> float:
    """One gain that keeps every signal under `peak`, so clean and noisy stay sample-aligned."""
    top = max(float(np.max(np.abs(s))) if s.size else 0.0 for s in signals)
    return min(1.0, peak / top) if top > 0 else 1.0


# --- which sentences --------------------------------------------------------------------------


def held_out_sentences(seed: int = 0) -> list[TextItem]:
    """Texts of the default corpus's `test` split: never in `train`, whatever voice speaks them.

    The split comes from a hash of the words alone (`plan.text_split`), so this needs no corpus on
    disk; it equals the distinct texts of `test.jsonl` in a default `data synth` build (seed 0).
    """
    return [item for item in default_texts(seed) if text_split(item.text) == "test"]


def choose_sentences(items: Sequence[TextItem], limit: int, seed: int = 0) -> list[TextItem]:
    """A seeded sample of `limit` texts, in the sample's random order; fillers are left out.

    Random order, because the test split comes grouped by source (all capital-city questions
    first): so the first N rows of a manifest (`--limit N` of the eval commands) are a fair sample
    too. Fillers ("uh-huh", "hmm") are what the Whisper normaliser deletes: their reference is empty.
    """
    usable = [item for item in items if item.kind != "filler"]
    if limit < 1:
        raise CorpusError(f"--limit must be at least 1, got {limit}")
    if not usable:
        raise CorpusError("no test sentences to speak")
    return random.Random(f"eval-sets-{seed}").sample(usable, min(limit, len(usable)))


# --- building ---------------------------------------------------------------------------------


def _utterance_id(voice: flite.FliteVoice, text: str) -> str:
    return hashlib.sha1(f"{voice.id}|{text}".encode()).hexdigest()[:16]


def _prepare(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise CorpusError(f"{out_dir}: cannot write the evaluation sets there ({err.strerror or err})") from None


def build_unseen_synth(config: EvalSetsConfig, items: Sequence[TextItem]) -> tuple[list[dict], list[dict]]:
    """Speak `items` with Flite's voices in turn; write clean and noisy WAVs; return both row lists."""
    engine = flite.FliteEngine()
    noisy_name = noisy_set_name(config.snr_db)
    clean_rows: list[dict] = []
    noisy_rows: list[dict] = []
    try:
        for index, item in enumerate(items):
            voice = flite.VOICES[index % len(flite.VOICES)]
            speech = augment.trim_silence(engine.synthesize(item.text, voice))
            if speech.size < MIN_SPEECH_SECONDS * SAMPLE_RATE or not np.isfinite(speech).all():
                raise CorpusError(f"flite voice {voice.name} produced no usable speech for {item.text!r}")
            clean = augment.pad_silence(augment.normalize_level(speech), PAD_SECONDS, PAD_SECONDS)
            first = int(PAD_SECONDS * SAMPLE_RATE)  # as pad_silence counts it
            span = (first, first + speech.size)  # the trimmed speech: its active part
            uid = _utterance_id(voice, item.text)
            rng = np.random.default_rng(int(uid, 16) ^ config.seed)
            noise_kind = ("white", "pink")[index % 2]
            noise = augment.NOISES[noise_kind](clean.size, rng)
            noisy = mix_at_snr(clean, noise, config.snr_db, span)
            gain = np.float32(shared_peak_gain(clean, noisy))
            common = {
                "id": uid, "text": item.text, "voice": voice.id, "engine": flite.ENGINE,
                "duration": round(clean.size / SAMPLE_RATE, 3), "split": "test", "kind": item.kind,
                "source": item.source, "speech_start": round(span[0] / SAMPLE_RATE, 3),
                "speech_end": round(span[1] / SAMPLE_RATE, 3),
            }
            for name, audio, rows, extra in (
                (CLEAN_SET, clean, clean_rows, {}),
                (noisy_name, noisy, noisy_rows, {"noise": noise_kind, "snr_db": config.snr_db}),
            ):
                relative = f"wavs/{name}/{uid}.wav"
                write_wav(config.out_dir / relative, audio * gain)
                rows.append({"audio": relative, **common, **extra})
    finally:
        engine.close()
    return clean_rows, noisy_rows


def build_human(out_dir: Path, recordings: Sequence[HumanRecording]) -> list[dict]:
    """Copy each recording as a 16 kHz mono WAV (levels untouched); return the manifest rows."""
    rows: list[dict] = []
    for recording in recordings:
        audio = read_audio(recording.audio, pcm_sample_rate=recording.pcm_sample_rate)
        relative = f"wavs/{HUMAN_SET}/{recording.collection}-{recording.audio.stem}.wav"
        write_wav(out_dir / relative, audio)
        rows.append({
            "audio": relative, "text": recording.text, "collection": recording.collection,
            "duration": round(audio.size / SAMPLE_RATE, 3), "package": recording.package,
            "licence": recording.licence, "transcript_source": recording.transcript_source,
            "original": str(recording.audio),
        })
    return rows


def _set_summary(rows: Sequence[dict]) -> dict[str, Any]:
    voices: dict[str, int] = {}
    for row in rows:
        key = row.get("voice") or row.get("collection") or "?"
        voices[key] = voices.get(key, 0) + 1
    return {"utterances": len(rows), "seconds": round(sum(r["duration"] for r in rows), 1), "by_voice": voices}


def build_eval_sets(config: EvalSetsConfig) -> dict[str, Any]:
    """Build every set (all tools are checked first); returns the summary also written to disk."""
    flite.check_flite()
    recordings = pocketsphinx_recordings() if config.human else []
    _prepare(config.out_dir)
    start = time.monotonic()
    items = choose_sentences(config.texts if config.texts is not None else held_out_sentences(), config.limit, config.seed)
    clean_rows, noisy_rows = build_unseen_synth(config, items)
    noisy_name = noisy_set_name(config.snr_db)
    sets: dict[str, list[dict]] = {CLEAN_SET: clean_rows, noisy_name: noisy_rows}
    if config.human:
        sets[HUMAN_SET] = build_human(config.out_dir, recordings)
    for name, rows in sets.items():
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        write_atomic(config.out_dir / f"{name}.jsonl", lines)
    summary: dict[str, Any] = {
        "sets": {name: {"manifest": f"{name}.jsonl", **_set_summary(rows)} for name, rows in sets.items()},
        "unseen_synth": {
            "engine": flite.ENGINE, "voices": [v.id for v in flite.VOICES],
            "texts": "default corpus test split" if config.texts is None else "given texts",
            "limit": config.limit, "seed": config.seed, "snr_db": config.snr_db, "snr_definition": SNR_DEFINITION,
            "level_dbfs": augment.REFERENCE_DBFS, "pad_seconds": PAD_SECONDS,
        },
        "human": {"package": recordings[0].package, "licences": sorted({r.licence for r in recordings}),
                  "use": "evaluation only, never training"} if recordings else None,
        "seconds": round(time.monotonic() - start, 1),
    }
    write_atomic(config.out_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary
