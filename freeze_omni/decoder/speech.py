"""Whole-text synthesis with the decoder alone (no LLM): `freeze-omni say`, training evaluation.

Each sentence Piper's phonemiser finds is decoded on its own (AR decoder -> codec tokens ->
codec decode), then the sentences are peak-normalised and joined with Piper's pause, as the
codec's resynthesis measurement does, so the figures compare like with like.
"""

from __future__ import annotations

import numpy as np
import torch

from freeze_omni.codec.model import Codec
from freeze_omni.codec.train import speak_sentences
from freeze_omni.decoder.generate import speak_ids
from freeze_omni.decoder.model import SpeechDecoder
from freeze_omni.decoder.onnx_step import OnnxStep
from freeze_omni.decoder.phonemes import shared_phonemizer
from freeze_omni.decoder.sampling import SamplingConfig


def text_tokens(model: SpeechDecoder, text: str, sampling: SamplingConfig,
                hidden: torch.Tensor | None = None, onnx_step: OnnxStep | None = None) -> list[np.ndarray]:
    """Codec tokens of every sentence of `text` (the same `hidden` prefix for each, if given)."""
    return [speak_ids(model, s.ids, sampling, hidden, onnx_step) for s in shared_phonemizer().sentences(text)]


def synthesize(model: SpeechDecoder, codec: Codec, text: str, sampling: SamplingConfig = SamplingConfig(),
               hidden: torch.Tensor | None = None, onnx_step: OnnxStep | None = None) -> np.ndarray:
    """float32 audio at the codec's rate (22.05 kHz) of `text` in the system's voice (the AR step
    on `onnx_step` if given; training evaluates the torch module it is training)."""
    parts = [codec.decode(tokens, seed=sampling.seed + i) if len(tokens) else np.zeros(0, np.float32)
             for i, tokens in enumerate(text_tokens(model, text, sampling, hidden, onnx_step))]
    return speak_sentences(parts)
