"""Speech recognition quality of the input side: through the frozen LLM (`llm`), the stage-1 CTC
head (`ctc`) or a token readout's own greedy CTC path (`tokens`, no LLM).

Chunked (the default) means the encoder sees 160 ms chunks with unlimited left context, exactly
what a live session hears (the masked forward equals the streaming `step`, which the encoder
tests prove); `--full-context` gives the offline figure of the same model. A live turn also starts
with the session's pre-roll, most of it quiet: `lead_ms` puts that much silence before each file.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.io import read_audio
from freeze_omni.encoder import FULL_CONTEXT, UNLIMITED
from freeze_omni.encoder.frontend import featurizer
from freeze_omni.errors import AudioError, FreezeOmniError
from freeze_omni.eval.manifest import by_voice, evenly_spaced, read_speech_manifest
from freeze_omni.eval.metrics import error_rates
from freeze_omni.llm import FrozenLLM
from freeze_omni.train.data import pad_features


@dataclass
class Recognizer:
    mode: str
    featurize: Callable
    chunk_160ms: int
    transcribe: Callable[[torch.Tensor, torch.Tensor, int, int], list[str]]


def load_recognizer(checkpoint: str | Path, mode: str, llm: FrozenLLM | None = None) -> Recognizer:
    """A recognizer from a training checkpoint of encoder-ctc (`ctc`) or encoder-llm (`llm`, `tokens`);
    an encoder-llm checkpoint reads with `llm`, by default the backbone its config names."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FreezeOmniError(f"{path}: no such checkpoint")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    state, stage_settings = saved["model"], saved["config"]["stage"]
    has_llm_parts = any(k.startswith("speech_input.") for k in state)
    if mode == "ctc":
        if has_llm_parts:
            raise FreezeOmniError(f"{path} is an encoder-llm checkpoint: it has no CTC head; use --mode llm")
        from freeze_omni.train.stages.encoder_ctc import CTCModel, EncoderCTCSettings, build_encoder, chunk_frames_160ms

        settings = EncoderCTCSettings.from_dict(stage_settings)
        model = CTCModel(build_encoder(settings.init))
    else:
        if not has_llm_parts:
            raise FreezeOmniError(f"{path} is an encoder-ctc checkpoint: train encoder-llm first, or use --mode ctc")
        token_ids = state.get("speech_input.adapter.readout.token_ids")
        if mode == "tokens" and token_ids is None:
            raise FreezeOmniError(f"{path} has no token readout (stage 2 without adapter_tokens); use --mode llm")
        from freeze_omni.train.stages.encoder_ctc import chunk_frames_160ms
        from freeze_omni.train.stages.encoder_llm import EncoderLLMSettings, build_model

        settings = EncoderLLMSettings.from_dict({**stage_settings, "encoder_checkpoint": "", "prompt_init": ""})
        model = build_model(settings, llm, vocabulary=None if token_ids is None else token_ids.tolist())
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("llm.") for k in missing):
        raise FreezeOmniError(f"{path} does not match its own config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    encoder = model.encoder if mode == "ctc" else model.speech_input.encoder
    transcribe = model.token_transcripts if mode == "tokens" else model.transcribe
    return Recognizer(mode, featurizer(encoder.config), chunk_frames_160ms(encoder), transcribe)


def evaluate_asr(manifest: str | Path, recognizer: Recognizer, chunked: bool = True,
                 limit: int | None = None, lead_ms: int = 0) -> dict[str, Any]:
    items = evenly_spaced(read_speech_manifest(manifest), limit)
    chunk = recognizer.chunk_160ms if chunked else FULL_CONTEXT
    hypotheses, audio_s, busy_s = [], 0.0, 0.0
    for item in tqdm(items, desc=f"asr ({recognizer.mode})", unit="utt", file=sys.stderr, disable=None):
        try:
            audio = read_audio(item.audio)
        except AudioError as err:
            raise FreezeOmniError(f"{manifest}:{item.line}: {err}") from None
        audio = np.concatenate([np.zeros(lead_ms * SAMPLE_RATE // 1000, audio.dtype), audio])
        start = time.perf_counter()
        feats, lengths = pad_features([recognizer.featurize(audio)])
        with torch.inference_mode():
            hypotheses.append(recognizer.transcribe(feats, lengths, chunk, UNLIMITED)[0])
        busy_s += time.perf_counter() - start
        audio_s += audio.size / SAMPLE_RATE
    rates = error_rates([item.text for item in items], hypotheses)
    return {
        "wer": rates.wer, "cer": rates.cer, "rtf": busy_s / audio_s, "n": rates.n, "mode": recognizer.mode,
        "chunked": chunked, "lead_ms": lead_ms, "manifest": str(manifest),
        "utterances": [{"audio": item.audio_as_written, "reference": item.text, "hypothesis": hyp, "wer": utt.wer}
                       for item, hyp, utt in zip(items, hypotheses, rates.utterances)],
        **by_voice(items, rates),
    }
