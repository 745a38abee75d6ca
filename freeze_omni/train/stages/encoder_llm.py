"""Input stage 2: encoder + adapter learn to speak the frozen LLM's language (ASR through the LLM).

The LLM reads [system instruction | user turn start | prompt embeddings | speech | user turn end,
assistant start] and is taught, by next-token loss on the transcript, to write what was said. The
LLM never changes; the encoder (from stage 1), the adapter and the prompt embeddings learn.
Evaluation: WER of the transcripts the LLM writes from 160 ms streaming chunks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from freeze_omni.encoder import UNLIMITED, sample_chunk_config
from freeze_omni.encoder.frontend import featurizer
from freeze_omni.errors import FreezeOmniError
from freeze_omni.eval.metrics import error_rates
from freeze_omni.llm import FrozenLLM
from freeze_omni.paths import data_dir
from freeze_omni.speech_input import SpeechInput
from freeze_omni.train.data import (SpecAugmentConfig, load_feature_batch, plan_chunked_batches, read_utterances,
                                    spec_augment)
from freeze_omni.train.sequences import next_token_loss, pack_rows
from freeze_omni.train.stages.encoder_ctc import build_encoder, chunk_frames_160ms

ASR_INSTRUCTION = "Write down exactly what the user says, word for word."


@dataclass
class EncoderLLMSettings:
    corpus: str = ""                  # folder with train.jsonl / dev.jsonl; "" = the default corpus
    encoder_checkpoint: str = ""      # last.pt of encoder-ctc; "" = the pretrained encoder as it is
    init: str = "whisper-tiny.en"     # encoder architecture (must match the checkpoint)
    llm: str = ""                     # HF directory or .gguf; "" = the default backbone
    llm_dtype: str = "bfloat16"
    instruction: str = ASR_INSTRUCTION
    prompt_length: int = 4
    train_encoder: bool = True
    max_batch_seconds: float = 60.0
    max_utterance_seconds: float = 15.0
    max_chunk: int = 16
    full_context_prob: float = 0.2
    max_left_chunks: int = 8
    spec_augment: bool = True
    eval_utterances: int = 30
    train_limit: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "EncoderLLMSettings":
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise FreezeOmniError(f"unknown [stage] settings for encoder-llm: {', '.join(unknown)}")
        return cls(**raw)


class EncoderLLMModel(nn.Module):
    def __init__(self, speech_input: SpeechInput, llm: FrozenLLM, instruction: str) -> None:
        super().__init__()
        self.speech_input = speech_input
        self.llm = llm
        template, tokenizer = llm.template, llm.tokenizer
        self.register_buffer("prefix_ids", torch.tensor(template.system(tokenizer, instruction) + template.user_start),
                             persistent=False)
        self.register_buffer("suffix_ids", torch.tensor(template.user_end_assistant_start), persistent=False)
        self.end_id = (template.assistant_end or [tokenizer.eos_token_id])[0]

    def prefix(self) -> torch.Tensor:
        """[p, hidden] float32: template up to the user turn, then the trainable prompt embeddings."""
        return torch.cat([self.llm.embed(self.prefix_ids[None])[0].float(), self.speech_input.prompt])

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, targets: list[torch.Tensor],
                chunk_size: int, left_chunks: int):
        embeds, embed_lengths = self.speech_input(feats, lengths, chunk_size, left_chunks)
        speech = [embeds[i, : int(n)] for i, n in enumerate(embed_lengths)]
        suffix = self.llm.embed(self.suffix_ids[None])[0].float()
        packed = pack_rows(self.prefix(), speech, suffix, targets, self.llm.embed)
        hidden = self.llm(packed.embeds, packed.attention_mask.to(feats.device))
        loss, accuracy = next_token_loss(hidden, packed.labels.to(feats.device), self.llm.logits)
        return loss, {"token_accuracy": accuracy}

    @torch.no_grad()
    def transcribe(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int, left_chunks: int,
                   max_tokens: int = 80) -> list[str]:
        embeds, embed_lengths = self.speech_input(feats, lengths, chunk_size, left_chunks)
        suffix = self.llm.embed(self.suffix_ids[None])[0].float()
        texts = []
        for i, n in enumerate(embed_lengths.tolist()):
            row = torch.cat([self.prefix(), embeds[i, :n], suffix])[None]
            tokens = [t for t, _ in self.llm.generate_from_embeds(row, self.llm.new_cache(), max_new_tokens=max_tokens)]
            texts.append(self.llm.tokenizer.decode([t for t in tokens if t not in self.llm.stop_ids]).strip())
        return texts


def load_speech_input(settings: EncoderLLMSettings, llm_hidden_size: int) -> SpeechInput:
    encoder = build_encoder(settings.init)
    if settings.encoder_checkpoint:
        path = Path(settings.encoder_checkpoint)
        if not path.is_file():
            raise FreezeOmniError(f"{path}: no such encoder checkpoint (run `freeze-omni train encoder-ctc` first)")
        state = torch.load(path, map_location="cpu", weights_only=False)["model"]
        encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")})
    speech_input = SpeechInput(encoder, llm_hidden_size, settings.prompt_length)
    speech_input.encoder.requires_grad_(settings.train_encoder)
    return speech_input


def build_model(settings: EncoderLLMSettings, llm: FrozenLLM | None = None) -> EncoderLLMModel:
    llm = llm or FrozenLLM.load(settings.llm or None, dtype=getattr(torch, settings.llm_dtype))
    return EncoderLLMModel(load_speech_input(settings, llm.hidden_size), llm, settings.instruction)


class EncoderLLMStage:
    def __init__(self, settings: EncoderLLMSettings, llm: FrozenLLM | None = None) -> None:
        self.settings = settings
        corpus = Path(settings.corpus) if settings.corpus else data_dir() / "corpus" / "default"
        self.train_set = read_utterances(corpus / "train.jsonl", settings.max_utterance_seconds,
                                         limit=settings.train_limit or None)
        self.dev_set = read_utterances(corpus / "dev.jsonl", settings.max_utterance_seconds,
                                       limit=settings.eval_utterances)
        self.module = build_model(settings, llm)
        self.featurize = featurizer(self.module.speech_input.encoder.config)
        self.chunk_160ms = chunk_frames_160ms(self.module.speech_input.encoder)

    def plan(self, epoch: int, seed: int) -> list[tuple[list[int], int, int, int]]:
        return plan_chunked_batches(self.train_set, self.settings.max_batch_seconds, seed, epoch, self._sample_chunk)

    def _sample_chunk(self, rng: random.Random) -> tuple[int, int]:
        chunk = sample_chunk_config(rng, self.settings.max_chunk, self.settings.full_context_prob,
                                    self.settings.max_left_chunks)
        return chunk.chunk_size, chunk.left_chunks

    def load(self, spec: tuple[list[int], int, int, int], device: torch.device) -> dict[str, Any]:
        indices, chunk_size, left_chunks, augment_seed = spec
        feats, lengths, texts = load_feature_batch(self.train_set, indices, self.featurize)
        if self.settings.spec_augment:
            feats = spec_augment(feats, lengths, SpecAugmentConfig(), torch.Generator().manual_seed(augment_seed))
        tokenizer = self.module.llm.tokenizer
        targets = [torch.tensor(tokenizer.encode(t, add_special_tokens=False) + [self.module.end_id], device=device)
                   for t in texts]
        return {"feats": feats.to(device), "lengths": lengths.to(device), "targets": targets,
                "chunk_size": chunk_size, "left_chunks": left_chunks}

    def evaluate(self, module: EncoderLLMModel) -> dict[str, float]:
        """WER of the LLM's transcripts of held-out speech heard in 160 ms chunks."""
        refs, hyps = [], []
        for start in range(0, len(self.dev_set), 8):
            indices = list(range(start, min(start + 8, len(self.dev_set))))
            feats, lengths, texts = load_feature_batch(self.dev_set, indices, self.featurize)
            refs += texts
            hyps += module.transcribe(feats, lengths, self.chunk_160ms, UNLIMITED)
        rates = error_rates(refs, hyps)
        return {"wer_160ms": rates.wer, "cer_160ms": rates.cer}
