"""Input stage 2: encoder + adapter learn to speak the frozen LLM's language (ASR through the LLM).

The LLM reads [system instruction | user turn start | prompt embeddings | speech | user turn end,
assistant start | answer lead] and is taught, by next-token loss on the transcript (and the
closing text), to write what was said. A small LLM does not transcribe on request even from
typed text (SmolLM2-135M answers the question instead), but after a lead such as `You said: "`
it copies the user's words from its context and closes the quote: the packaged config uses that
form, so the speech only has to become something the LLM can copy from. The
LLM never changes; the encoder (from stage 1), the adapter and the prompt embeddings learn. An
optional CTC loss against the LLM's own input embeddings (`embedding_ctc.py`) gives the adapter a
direct signal while the LLM still writes from its prior.
Evaluation: WER of the transcripts the LLM writes from 160 ms streaming chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from freeze_omni.encoder import UNLIMITED
from freeze_omni.encoder.frontend import featurizer
from freeze_omni.errors import FreezeOmniError
from freeze_omni.eval.metrics import error_rates
from freeze_omni.llm import FrozenLLM
from freeze_omni.speech_input import SpeechInput
from freeze_omni.train.embedding_ctc import embedding_ctc_loss
from freeze_omni.train.sequences import next_token_loss
from freeze_omni.train.stages.copy_prompt import CopyPromptSettings, trained_prompt
from freeze_omni.train.stages.encoder_ctc import build_encoder, chunk_frames_160ms
from freeze_omni.train.stages.speech import BatchSpec, ChunkedSpeechData, SpeechDataSettings
from freeze_omni.train.transcript_form import ASR_INSTRUCTION, TranscriptForm


@dataclass
class EncoderLLMSettings(SpeechDataSettings):
    encoder_checkpoint: str = ""      # last.pt of encoder-ctc; "" = the pretrained encoder as it is
    init: str = "whisper-tiny.en"     # encoder architecture (must match the checkpoint)
    llm: str = ""                     # HF directory or .gguf; "" = the default backbone
    llm_dtype: str = "bfloat16"
    instruction: str = ASR_INSTRUCTION
    answer_lead: str = ""             # text the assistant turn starts with, e.g. 'You said: "'
    answer_close: str = ""            # text after the transcript, e.g. '"' (the hypothesis ends there)
    prompt_length: int = 4
    adapter_norm: bool = False        # RMS-normalise adapter output at the LLM embedding scale (adapter.py)
    train_encoder: bool = True
    encoder_lr_scale: float = 1.0     # the encoder's learning rate relative to the adapter's
    embedding_ctc_weight: float = 0.0  # weight of the CTC loss against the LLM's input embeddings
    prompt_init: str = ""             # last.pt of copy-prompt (same LLM, instruction, lead, close); "" = random


class EncoderLLMModel(nn.Module):
    def __init__(self, speech_input: SpeechInput, llm: FrozenLLM, instruction: str, answer_lead: str = "",
                 answer_close: str = "", embedding_ctc_weight: float = 0.0, encoder_lr_scale: float = 1.0) -> None:
        super().__init__()
        self.speech_input = speech_input
        self.llm = llm
        self.form = TranscriptForm(llm, instruction, answer_lead, answer_close)
        self.embedding_ctc_weight = embedding_ctc_weight
        self.lr_scales = {"speech_input.encoder.": encoder_lr_scale}  # read by the training loop

    def target_ids(self, transcript: str) -> list[int]:
        return self.form.target_ids(self.llm, transcript)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, targets: list[torch.Tensor],
                chunk_size: int, left_chunks: int):
        embeds, embed_lengths = self.speech_input(feats, lengths, chunk_size, left_chunks)
        speech = [embeds[i, : int(n)] for i, n in enumerate(embed_lengths)]
        packed = self.form.rows(self.llm, self.speech_input.prompt, speech, targets)
        hidden = self.llm(packed.embeds, packed.attention_mask.to(feats.device))
        loss, accuracy = next_token_loss(hidden, packed.labels.to(feats.device), self.llm.logits)
        metrics = {"token_accuracy": accuracy}
        if self.embedding_ctc_weight:
            ctc = embedding_ctc_loss(speech, [t[:-1] for t in targets], self.llm.model.embed.weight)
            loss = loss + self.embedding_ctc_weight * ctc
            metrics["embedding_ctc"] = ctc.item()
        return loss, metrics

    @torch.no_grad()
    def transcribe(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int, left_chunks: int,
                   max_tokens: int = 80) -> list[str]:
        embeds, embed_lengths = self.speech_input(feats, lengths, chunk_size, left_chunks)
        return [self.form.read(self.llm, self.speech_input.prompt, embeds[i, :n], max_tokens)
                for i, n in enumerate(embed_lengths.tolist())]


def load_speech_input(settings: EncoderLLMSettings, llm: FrozenLLM) -> SpeechInput:
    encoder = build_encoder(settings.init)
    if settings.encoder_checkpoint:
        path = Path(settings.encoder_checkpoint)
        if not path.is_file():
            raise FreezeOmniError(f"{path}: no such encoder checkpoint (run `freeze-omni train encoder-ctc` first)")
        state = torch.load(path, map_location="cpu", weights_only=False)["model"]
        encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")})
    speech_input = SpeechInput(encoder, llm.hidden_size, settings.prompt_length, settings.adapter_norm)
    if settings.adapter_norm:
        speech_input.adapter.match_embedding_scale(llm.model.embed.weight)
    speech_input.encoder.requires_grad_(settings.train_encoder)
    return speech_input


def build_model(settings: EncoderLLMSettings, llm: FrozenLLM | None = None) -> EncoderLLMModel:
    llm = llm or FrozenLLM.load(settings.llm or None, dtype=getattr(torch, settings.llm_dtype))
    speech_input = load_speech_input(settings, llm)
    if settings.prompt_init:
        form = CopyPromptSettings(llm=settings.llm, instruction=settings.instruction, answer_lead=settings.answer_lead,
                                  answer_close=settings.answer_close)
        prompt = trained_prompt(settings.prompt_init, form)
        if prompt.shape != speech_input.prompt.shape:
            raise FreezeOmniError(f"{settings.prompt_init}: prompt of shape {tuple(prompt.shape)}, this stage has "
                                  f"{tuple(speech_input.prompt.shape)} (prompt_length)")
        speech_input.prompt.data.copy_(prompt)
    return EncoderLLMModel(speech_input, llm, settings.instruction, settings.answer_lead,
                           settings.answer_close, settings.embedding_ctc_weight, settings.encoder_lr_scale)


class EncoderLLMStage(ChunkedSpeechData):
    def __init__(self, settings: EncoderLLMSettings, llm: FrozenLLM | None = None) -> None:
        self.module = build_model(settings, llm)
        super().__init__(settings, featurizer(self.module.speech_input.encoder.config))
        self.chunk_160ms = chunk_frames_160ms(self.module.speech_input.encoder)

    def load(self, spec: BatchSpec, device: torch.device) -> dict[str, Any]:
        feats, lengths, texts = self.training_features(spec)
        targets = [torch.tensor(self.module.target_ids(t), device=device) for t in texts]
        return {"feats": feats.to(device), "lengths": lengths.to(device), "targets": targets,
                "chunk_size": spec[1], "left_chunks": spec[2]}

    def evaluate(self, module: EncoderLLMModel) -> dict[str, float]:
        """WER of the LLM's transcripts of held-out speech heard in 160 ms chunks."""
        refs, hyps = [], []
        for feats, lengths, texts in self.dev_batches():
            refs += texts
            hyps += module.transcribe(feats, lengths, self.chunk_160ms, UNLIMITED)
        rates = error_rates(refs, hyps)
        return {"wer_160ms": rates.wer, "cer_160ms": rates.cer}
