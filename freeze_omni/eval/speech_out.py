"""Intelligibility of the system's speech: the reference ASR on what the decoder says vs its text.

Shared by `freeze-omni eval speech-out` and the decoder training stages (their held-out WER).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from freeze_omni.audio import SAMPLE_RATE as RATE_16K
from freeze_omni.audio.io import resample
from freeze_omni.codec.piper_latent import SAMPLE_RATE
from freeze_omni.decoder.sampling import SamplingConfig
from freeze_omni.dialogue.phrases import PhraseRule
from freeze_omni.eval import reference_asr
from freeze_omni.eval.metrics import error_rates

if TYPE_CHECKING:
    from freeze_omni.decoder.onnx_step import OnnxStep

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


def read_texts(path) -> list[str]:
    """A text list for speech output: one sentence a line, blank lines skipped."""
    from pathlib import Path

    from freeze_omni.errors import FreezeOmniError

    path = Path(path)
    if not path.is_file():
        raise FreezeOmniError(f"{path}: no such text file")
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise FreezeOmniError(f"{path}: no text in it")
    return texts


def source_and_resynthesis(texts: Sequence[str], codec, threads: int | None = None) -> dict:
    """The reference ASR on Piper's own audio of each text (source) and on the same sentences
    through codec encode -> decode (resynthesis): the floors the decoder's speech is measured against."""
    from freeze_omni.codec.piper_latent import Generator, PiperLatent
    from freeze_omni.codec.train import speak_sentences

    speaker, generator = PiperLatent(1), Generator(1)
    latents = {}

    def spoken(i: int, text: str):
        latents[i] = speaker.speak(text)
        return latents[i]

    source = speech_wer(texts, lambda i, t: speak_sentences([generator(s.z) for s in spoken(i, t)]), threads,
                        desc="source")
    resynthesis = speech_wer(texts, lambda i, t: speak_sentences(
        [codec.decode(codec.encode_sentence(s), seed=i)[: s.frames * codec.config.hop] for s in latents[i]]),
        threads, desc="resynthesis")
    return {"source": source, "resynthesis": resynthesis}


def evaluate_speech_out(texts: Sequence[str], model, codec, top_ks: Sequence[int], llm=None,
                        threads: int | None = None, floors: bool = True, onnx_step: OnnxStep | None = None,
                        sampling: SamplingConfig = SamplingConfig(), phrases: PhraseRule | None = None) -> dict:
    """REPORTS.md `eval speech-out`: WER/CER per top-k without the prefix decoder and, given the
    LLM, with it (the LLM reads each text as its own answer; its hidden states feed the prefix).
    `onnx_step` (`decoder.onnx_step.load_onnx_step`) runs the AR step as inference does; `sampling`
    sets everything but top-k and the seed (text i speaks with seed i). With `phrases` (and the
    LLM), each answer is cut by that rule as the turn engine cuts it and spoken phrase by phrase,
    each on its own, as a dialogue speaks it."""
    from freeze_omni.decoder.answers import cut_phrases, read_as_answer
    from freeze_omni.decoder.speech import synthesize

    if phrases is not None and llm is None:
        raise ValueError("speaking in phrases needs the LLM: it cuts its own answer")
    answers = [read_as_answer(llm, t) for t in texts] if llm is not None else None
    cuts = [cut_phrases(llm, a.token_ids, list(a.hidden), phrases) if phrases else [a] for a in answers or []]
    variants = {"no_prefix": None} if answers is None else {"prefix": cuts, "no_prefix": None}
    by: dict[str, dict[str, dict]] = {name: {} for name in variants}
    rows = [{"text": t} for t in texts]

    def speak(i: int, text: str, k: int, parts) -> np.ndarray:
        config = replace(sampling, top_k=k, seed=i)
        if parts is None:
            return synthesize(model, codec, text, config, None, onnx_step)
        return np.concatenate([synthesize(model, codec, p.text, replace(config, seed=i + p.index), p.hidden, onnx_step)
                               for p in parts[i]])

    for name, parts in variants.items():
        for k in top_ks:
            result = speech_wer(texts, lambda i, t: speak(i, t, k, parts), threads, desc=f"top-k {k} {name}")
            by[name][str(k)] = {"wer": result["wer"], "cer": result["cer"], "audio_seconds": result["audio_seconds"]}
            for row, hyp in zip(rows, result["hypotheses"]):
                row[f"top{k}_{name}"] = hyp
    main = by["prefix" if answers is not None else "no_prefix"]
    best = min(main, key=lambda k: main[k]["wer"])
    report = {"wer": main[best]["wer"], "cer": main[best]["cer"], "best_top_k": int(best),
              "prefix": answers is not None, "phrases": None if phrases is None else asdict(phrases),
              "by_top_k": main, "by_top_k_no_prefix": by["no_prefix"],
              "pace_bias": sampling.pace_bias, "prior_weight": sampling.prior_weight}
    if floors:
        measured = source_and_resynthesis(texts, codec, threads)
        report.update({"resynthesis_wer": measured["resynthesis"]["wer"], "resynthesis_cer": measured["resynthesis"]["cer"],
                       "source_wer": measured["source"]["wer"], "source_cer": measured["source"]["cer"]})
        for row, src, res in zip(rows, measured["source"]["hypotheses"], measured["resynthesis"]["hypotheses"]):
            row.update(source=src, resynthesis=res)
    report.update({"n": len(texts), "model": reference_asr.MODEL_NAME,
                   "step": "onnx" if onnx_step is not None else "torch", "utterances": rows})
    return report
