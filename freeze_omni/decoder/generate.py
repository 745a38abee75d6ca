"""Streaming inference: one `DecoderState` per sentence being spoken, one symbol per `step`.

The state holds everything a session needs to continue (encoder states of the sentence's
phoneme ids, the prefix from the LLM, the AR key/value caches, the alignment pointer, the random
generator), so the model stays stateless and any worker can run the next step.

The AR step runs on PyTorch (`ARDecoder.step`, the reference; training evaluates this way) or,
for inference, on ONNX Runtime (`onnx_step.OnnxStep`, ~5x faster on CPU): a state started with an
`OnnxStep` keeps its caches in that step's buffers and takes every step there. Sampling is the
same code on the same float32 logits either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from freeze_omni.decoder.layers import KV
from freeze_omni.decoder.model import Prefix, SpeechDecoder
from freeze_omni.decoder.onnx_step import OnnxStep, StepCache
from freeze_omni.decoder.sampling import SamplingConfig, choose_code, legal, pace, penalise, top_k
from freeze_omni.decoder.targets import shared_voice_text


@dataclass
class DecoderState:
    encoded: torch.Tensor  # [P, dim] phoneme-encoder states of the sentence
    prefix: Prefix | None  # NAR prefix from the LLM's hidden states, or None
    generator: torch.Generator
    caches: list[KV] | StepCache | None = None  # AR key/value caches: per layer (torch) or the ONNX step's
    onnx_step: OnnxStep | None = None  # runs the AR step instead of `ARDecoder.step` when set
    previous: int = -1  # last symbol emitted (BOS before the first step)
    pointer: int = 0  # phoneme id being spoken
    count: int = 0  # tokens emitted for it so far
    position: int = 0  # steps taken
    history: list[int] = field(default_factory=list)  # codes emitted, for the repetition window
    phoneme_start: int = 0  # len(history) when the pointer reached the current id
    done: bool = False
    phonemes: np.ndarray | None = None  # [P] the sentence's phoneme ids (for the voice's prior)
    closeness: torch.Tensor | None = None  # [P, codes] float32 CPU, made when first needed (`prior_closeness`)

    @property
    def ids(self) -> int:
        return self.encoded.shape[0]


@torch.no_grad()
def prior_closeness(model: SpeechDecoder, ids: np.ndarray) -> torch.Tensor:
    """[P, codes]: -|t_p - code|^2 / 2, shifted to 0 at the nearest code, where t_p is the token
    the voice itself gives a frame pair inside id p (its prior mean in both frames)."""
    transposed, half_norms = model.decoder.head.derived()
    mean = torch.from_numpy(shared_voice_text().prior(ids))
    stack, rest = divmod(transposed.shape[0], mean.shape[1])
    if rest or not stack:
        raise ValueError(f"codes of {transposed.shape[0]} values are not frames of the voice's {mean.shape[1]}-wide prior")
    folded = transposed.float().cpu().view(stack, mean.shape[1], -1).sum(0)  # t_p . code = m_p . (sum of its frames)
    scores = mean @ folded - half_norms.float().cpu()
    return scores - scores.amax(-1, keepdim=True)


@torch.no_grad()
def start(model: SpeechDecoder, ids: np.ndarray, hidden: torch.Tensor | None = None, seed: int = 0,
          onnx_step: OnnxStep | None = None) -> DecoderState:
    """Encode one sentence's phoneme ids (and the LLM hidden states of its phrase, if any).
    With `onnx_step` (made from this model's AR decoder) every step of the sentence runs there."""
    device = next(model.parameters()).device
    ids_t = torch.as_tensor(np.asarray(ids, np.int64), device=device)[None]
    encoded = model.encoder(ids_t, torch.tensor([ids_t.shape[1]], device=device))[0]
    prefix = None
    if hidden is not None and len(hidden):
        dtype = next(model.parameters()).dtype
        prefix = model.make_prefix(hidden.to(device, dtype)[None], torch.tensor([hidden.shape[0]], device=device))
    return DecoderState(encoded, prefix, torch.Generator().manual_seed(seed),
                        caches=None if onnx_step is None else onnx_step.new_cache(prefix), onnx_step=onnx_step,
                        previous=model.config.vocab.bos, phonemes=np.asarray(ids, np.int64))


@torch.no_grad()
def step(model: SpeechDecoder, state: DecoderState, sampling: SamplingConfig) -> int:
    """Advance `state` by one symbol (mutated in place) and return the symbol."""
    if state.done:
        raise ValueError("sentence already finished")
    vocab = model.config.vocab
    if state.onnx_step is not None:
        logits = torch.from_numpy(state.onnx_step(state.previous, state.encoded[state.pointer].float().cpu().numpy(),
                                                  state.count, state.position, state.caches))
    else:
        device = state.encoded.device
        logits, state.caches = model.decoder.step(
            torch.tensor([state.previous], device=device), state.encoded[state.pointer][None],
            torch.tensor([state.count], device=device), state.position, state.caches, state.prefix)
        logits = logits[0].float().cpu()
    logits = pace(legal(logits, vocab, state.pointer, state.ids, state.count, sampling.max_tokens_per_phoneme),
                  vocab, sampling.pace_bias)
    window = state.history[max(0, state.phoneme_start - sampling.repetition_window): state.phoneme_start]
    logits = penalise(logits, window, sampling.repetition_penalty)
    symbol = top_k(logits, sampling.top_k, sampling.temperature, state.generator)
    if symbol < vocab.codes and sampling.prior_weight:
        if state.closeness is None:
            state.closeness = prior_closeness(model, state.phonemes)
        symbol = choose_code(logits[: vocab.codes], state.closeness[state.pointer], sampling.prior_weight,
                             sampling.top_k, sampling.temperature, state.generator)
    state.previous, state.position = symbol, state.position + 1
    if symbol < vocab.codes:
        state.history.append(symbol)
        state.count += 1
    elif symbol == vocab.advance:
        state.pointer, state.count, state.phoneme_start = state.pointer + 1, 0, len(state.history)
    else:
        state.done = True
    return symbol


def codec_tokens(model: SpeechDecoder, state: DecoderState, sampling: SamplingConfig) -> Iterator[int]:
    """Codec tokens of one sentence, one at a time, until STOP (the length guard ensures it comes:
    at most `max_tokens_per_phoneme` codes per id, then ADVANCE/STOP are the only legal moves)."""
    codes = model.config.vocab.codes
    while not state.done:
        symbol = step(model, state, sampling)
        if symbol < codes:
            yield symbol


def speak_ids(model: SpeechDecoder, ids: np.ndarray, sampling: SamplingConfig,
              hidden: torch.Tensor | None = None, onnx_step: OnnxStep | None = None) -> np.ndarray:
    """All codec tokens of one sentence."""
    state = start(model, ids, hidden, sampling.seed, onnx_step)
    return np.array(list(codec_tokens(model, state, sampling)), np.int64)
