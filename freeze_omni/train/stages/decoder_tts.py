"""Output stage 2: text (as the voice's phoneme ids) -> AR decoder -> codec tokens.

Data: `freeze_omni.decoder.dataset` (tens of thousands of varied texts spoken by Piper with
sampled deliveries -> durations and codec tokens, cached in shards). Loss: cross-entropy on
every emitted symbol (codes, ADVANCE, STOP) under teacher forcing with the explicit alignment.
The NAR prefix decoder is not used here (stage 3 trains it against this frozen AR decoder).
Evaluation: reference-ASR WER of whole held-out (dev) sentences the decoder speaks on its own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from freeze_omni.codec.model import Codec
from freeze_omni.decoder.alignment import interleave
from freeze_omni.decoder.batch import IGNORE, collate
from freeze_omni.decoder.dataset import TokenSet, build_tokens, stderr_log, tts_texts
from freeze_omni.decoder.model import DecoderConfig, SpeechDecoder
from freeze_omni.decoder.sampling import SamplingConfig
from freeze_omni.decoder.speech import synthesize
from freeze_omni.train.config import StageSettings
from freeze_omni.paths import data_dir


@dataclass
class DecoderTTSSettings(StageSettings):
    texts: int = 12000  # train-split texts spoken by Piper
    eval_sentences: int = 24  # dev texts for the held-out WER
    eval_top_k: int = 2
    eval_max_tokens_per_phoneme: int = 24  # the length guard while measuring
    max_batch_symbols: int = 6000  # padded steps per batch
    codec: str = ""  # codec weights; "" = the default model's
    data: str = ""  # token shards; "" = DATA/decoder/tokens
    seed: int = 0
    # torch threads while the tokens are built (codec nearest-code search): the stage is built
    # before the loop applies [train] threads, and two threads on busy cores run many times slower
    data_threads: int = 1
    dim: int = 192
    heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    prefix_layers: int = 2
    dropout: float = 0.1

    def decoder_config(self, codec: Codec, llm_hidden: int = 576) -> DecoderConfig:
        from freeze_omni.decoder.phonemes import shared_phonemizer

        return DecoderConfig(codes=codec.config.codes, code_dim=codec.config.vector_dim, phoneme_symbols=shared_phonemizer().symbols,
                             llm_hidden=llm_hidden, dim=self.dim, heads=self.heads,
                             encoder_layers=self.encoder_layers, decoder_layers=self.decoder_layers,
                             prefix_layers=self.prefix_layers, dropout=self.dropout)


def symbol_loss(logits: torch.Tensor, targets: torch.Tensor, codes: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy over real steps; accuracy on codes and on the control symbols separately."""
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)
    with torch.no_grad():
        real = targets != IGNORE
        hit = (logits.argmax(-1) == targets) & real
        code = real & (targets < codes)
        control = real & (targets >= codes)
        metrics = {"code_accuracy": (hit & code).sum().item() / max(1, code.sum().item()),
                   "control_accuracy": (hit & control).sum().item() / max(1, control.sum().item())}
    return loss, metrics


class DecoderTTSModel(nn.Module):
    def __init__(self, decoder: SpeechDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, ids, id_lengths, inputs, pointer, count, targets):
        logits = self.decoder.logits(ids, id_lengths, inputs, pointer, count)
        return symbol_loss(logits, targets, self.decoder.config.codes)


def length_batches(lengths: list[int], budget: int, rng: random.Random) -> list[list[int]]:
    """Sentences grouped by similar length into batches of at most `budget` padded steps, shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches, current, longest = [], [], 0
    for i in order:
        longest_if = max(longest, lengths[i])
        if current and longest_if * (len(current) + 1) > budget:
            batches.append(current)
            current, longest_if = [], lengths[i]
        current.append(i)
        longest = longest_if
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


class DecoderTTSStage:
    def __init__(self, settings: DecoderTTSSettings, codec: Codec | None = None) -> None:
        self.settings = settings
        if settings.data_threads:
            torch.set_num_threads(settings.data_threads)
        self.codec = codec or (Codec.load(settings.codec) if settings.codec else Codec.load())
        folder = data_dir() / "decoder" / "tokens" if not settings.data else Path(settings.data)
        texts = tts_texts("train", settings.texts, settings.seed)
        self.data: TokenSet = build_tokens(texts, folder / f"train-seed{settings.seed}", self.codec, settings.seed,
                                           log=stderr_log)
        self.vocab = settings.decoder_config(self.codec).vocab
        self.lengths = [len(t) + len(i) for t, i in zip(self.data.tokens, self.data.ids)]
        self.eval_texts = tts_texts("dev", settings.eval_sentences, settings.seed)
        self.module = DecoderTTSModel(SpeechDecoder(settings.decoder_config(self.codec), self.codec.codebook))

    def plan(self, epoch: int, seed: int) -> list[list[int]]:
        return length_batches(self.lengths, self.settings.max_batch_symbols, random.Random(f"{seed}-{epoch}"))

    def load(self, spec: list[int], device: torch.device) -> dict[str, Any]:
        stack = self.codec.config.stack
        aligned = [interleave(self.data.tokens[i], self.data.owners(i, stack), len(self.data.ids[i]), self.vocab)
                   for i in spec]
        batch = collate([self.data.ids[i] for i in spec], aligned)
        return {k: v.to(device) for k, v in batch.items()}

    def evaluate(self, module: DecoderTTSModel) -> dict[str, float]:
        from freeze_omni.eval.speech_out import speech_wer

        s = self.settings
        result = speech_wer(self.eval_texts, lambda i, text: synthesize(
            module.decoder, self.codec, text,
            SamplingConfig(top_k=s.eval_top_k, max_tokens_per_phoneme=s.eval_max_tokens_per_phoneme, seed=i)),
            threads=1, desc="eval WER")
        return {"wer": result["wer"], "cer": result["cer"]}
