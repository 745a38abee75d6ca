"""Output stage 3: only the NAR prefix decoder learns, from the frozen LLM's hidden states while it
speaks its own answers to corpus questions (spoken by the system's voice: Piper's durations and
codec tokens of each answer phrase). The phoneme encoder and the AR decoder from stage 2 stay
frozen; the prefix steers them through the attention of every AR layer (prefix tuning).
Evaluation: reference-ASR WER of held-out (dev) questions' answer phrases spoken with the prefix,
next to the same phrases without it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from freeze_omni.codec.model import Codec
from freeze_omni.decoder.alignment import interleave, token_owners
from freeze_omni.decoder.batch import collate, pad_hidden
from freeze_omni.decoder.dataset import stderr_log
from freeze_omni.decoder.model import SpeechDecoder
from freeze_omni.decoder.prefix_data import PrefixItem, build_prefix_items, quiz_questions
from freeze_omni.decoder.sampling import SamplingConfig
from freeze_omni.decoder.speech import synthesize
from freeze_omni.decoder.weights import DEFAULT_DECODER_PATH, load_decoder
from freeze_omni.errors import FreezeOmniError
from freeze_omni.train.config import StageSettings
from freeze_omni.paths import data_dir
from freeze_omni.train.stages.decoder_tts import length_batches, symbol_loss


@dataclass
class DecoderPrefixSettings(StageSettings):
    decoder: str = ""  # decoder weights from stage 2; "" = the default model's decoder.safetensors
    codec: str = ""
    llm: str = ""  # HF directory or .gguf; "" = the default backbone
    llm_dtype: str = "bfloat16"
    questions: int = 300  # train-split quiz questions the LLM answers
    eval_questions: int = 12  # dev-split questions for the held-out WER
    eval_top_k: int = 2
    eval_max_tokens_per_phoneme: int = 24
    max_batch_symbols: int = 4000
    data: str = ""  # "" = DATA/decoder/prefix
    seed: int = 0
    # torch threads while the LLM writes the answers: the stage is built before the loop applies
    # [train] threads, and two threads on busy cores run many times slower than one
    data_threads: int = 1


class DecoderPrefixModel(nn.Module):
    def __init__(self, decoder: SpeechDecoder) -> None:
        super().__init__()
        self.decoder = decoder
        decoder.requires_grad_(False)
        decoder.prefix.requires_grad_(True)

    def train(self, mode: bool = True) -> DecoderPrefixModel:
        """The frozen parts stay in eval mode (no dropout) whatever the loop asks."""
        super().train(False)
        self.decoder.prefix.train(mode)
        return self

    def forward(self, ids, id_lengths, inputs, pointer, count, targets, hidden, hidden_lengths):
        logits = self.decoder.logits(ids, id_lengths, inputs, pointer, count, hidden, hidden_lengths)
        return symbol_loss(logits, targets, self.decoder.config.codes)


class DecoderPrefixStage:
    def __init__(self, settings: DecoderPrefixSettings, llm=None, codec: Codec | None = None) -> None:
        from freeze_omni.llm import FrozenLLM

        self.settings = settings
        if settings.data_threads:
            torch.set_num_threads(settings.data_threads)
        self.codec = codec or (Codec.load(settings.codec) if settings.codec else Codec.load())
        decoder = load_decoder(settings.decoder or DEFAULT_DECODER_PATH)
        llm = llm or FrozenLLM.load(settings.llm or None, dtype=getattr(torch, settings.llm_dtype))
        if llm.hidden_size != decoder.config.llm_hidden:
            raise FreezeOmniError(f"the decoder's prefix reads {decoder.config.llm_hidden}-dim hidden states, "
                                  f"the LLM has {llm.hidden_size}")
        folder = Path(settings.data) if settings.data else data_dir() / "decoder" / "prefix"
        build = lambda split, n: build_prefix_items(  # noqa: E731
            quiz_questions(split, n, settings.seed), folder / f"{split}-seed{settings.seed}", llm, self.codec,
            settings.seed, log=stderr_log)
        self.items: list[PrefixItem] = build("train", settings.questions)
        held_out = build("dev", settings.eval_questions)
        self.eval_phrases = list({item.text: item.hidden for item in held_out}.items())
        if not self.items:
            raise FreezeOmniError("the LLM's answers gave no speakable phrases")
        self.lengths = [len(i.tokens) + len(i.ids) for i in self.items]
        self.module = DecoderPrefixModel(decoder)
        self.baseline: dict[str, float] | None = None

    def plan(self, epoch: int, seed: int) -> list[list[int]]:
        return length_batches(self.lengths, self.settings.max_batch_symbols, random.Random(f"prefix-{seed}-{epoch}"))

    def load(self, spec: list[int], device: torch.device) -> dict[str, Any]:
        vocab, stack = self.module.decoder.config.vocab, self.codec.config.stack
        items = [self.items[i] for i in spec]
        aligned = [interleave(i.tokens, token_owners(i.durations, stack), len(i.ids), vocab) for i in items]
        batch = collate([i.ids for i in items], aligned)
        batch["hidden"], batch["hidden_lengths"] = pad_hidden([i.hidden.float() for i in items])
        return {k: v.to(device) for k, v in batch.items()}

    def _wer(self, decoder: SpeechDecoder, use_prefix: bool) -> dict[str, float]:
        from freeze_omni.eval.speech_out import speech_wer

        texts = [text for text, _ in self.eval_phrases]
        result = speech_wer(texts, lambda i, text: synthesize(
            decoder, self.codec, text, SamplingConfig(top_k=self.settings.eval_top_k, seed=i,
                                                      max_tokens_per_phoneme=self.settings.eval_max_tokens_per_phoneme),
            self.eval_phrases[i][1].float() if use_prefix else None), threads=1, desc="eval WER")
        return {"wer": result["wer"], "cer": result["cer"]}

    def evaluate(self, module: DecoderPrefixModel) -> dict[str, float]:
        if self.baseline is None:
            self.baseline = self._wer(module.decoder, use_prefix=False)
        figures = self._wer(module.decoder, use_prefix=True)
        return {**figures, "wer_no_prefix": self.baseline["wer"], "cer_no_prefix": self.baseline["cer"]}
