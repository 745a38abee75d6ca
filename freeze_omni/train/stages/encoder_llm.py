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
from freeze_omni.train.sequences import next_token_loss, pack_rows
from freeze_omni.train.stages.encoder_ctc import build_encoder, chunk_frames_160ms
from freeze_omni.train.stages.speech import BatchSpec, ChunkedSpeechData, SpeechDataSettings

ASR_INSTRUCTION = "Write down exactly what the user says, word for word."


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


class EncoderLLMModel(nn.Module):
    def __init__(self, speech_input: SpeechInput, llm: FrozenLLM, instruction: str, answer_lead: str = "",
                 answer_close: str = "", embedding_ctc_weight: float = 0.0, encoder_lr_scale: float = 1.0) -> None:
        super().__init__()
        self.speech_input = speech_input
        self.llm = llm
        self.embedding_ctc_weight = embedding_ctc_weight
        self.lr_scales = {"speech_input.encoder.": encoder_lr_scale}  # read by the training loop
        template, tokenizer = llm.template, llm.tokenizer
        self.register_buffer("prefix_ids", torch.tensor(template.system(tokenizer, instruction) + template.user_start),
                             persistent=False)
        lead = tokenizer.encode(answer_lead, add_special_tokens=False) if answer_lead else []
        self.register_buffer("suffix_ids", torch.tensor(template.user_end_assistant_start + lead), persistent=False)
        self.end_id = (template.assistant_end or [tokenizer.eos_token_id])[0]
        self.answer_close = answer_close

    def target_ids(self, transcript: str) -> list[int]:
        """What the LLM should write after the lead: the transcript, the closing text, the end."""
        return self.llm.tokenizer.encode(transcript + self.answer_close, add_special_tokens=False) + [self.end_id]

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
        suffix = self.llm.embed(self.suffix_ids[None])[0].float()
        texts = []
        for i, n in enumerate(embed_lengths.tolist()):
            row = torch.cat([self.prefix(), embeds[i, :n], suffix])[None]
            tokens = [t for t, _ in self.llm.generate_from_embeds(row, self.llm.new_cache(), max_new_tokens=max_tokens)]
            text = self.llm.tokenizer.decode([t for t in tokens if t not in self.llm.stop_ids])
            texts.append((text.split(self.answer_close)[0] if self.answer_close else text).strip())
        return texts


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
    return EncoderLLMModel(load_speech_input(settings, llm), llm, settings.instruction, settings.answer_lead,
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
