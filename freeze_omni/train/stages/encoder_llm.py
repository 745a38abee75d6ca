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

With `adapter_tokens`, the adapter ends in a token readout (adapter.py) over the LLM tokens of the
training transcripts, trained by CTC on the transcript's own LLM tokens (`token_ctc_weight`); the
next-token loss through the LLM may then be weighted down or left out (`llm_loss_weight` 0: no
LLM pass in training, about three times cheaper a step).
Evaluation: WER of the transcripts the LLM writes from 160 ms streaming chunks (and, with a token
readout, of its greedy CTC path).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from freeze_omni.adapter import TokenReadout
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

# A transcript's length guard: speech embeddings come at 12.5 Hz and speech carries ~4 LLM tokens a
# second, so half a token per embedding (plus the closing text) is room to spare; a copy that loops
# ("the law of the law of ...") stops there instead of at `max_tokens`.
TRANSCRIPT_TOKENS_PER_EMBEDDING = 0.5
TRANSCRIPT_TOKENS_EXTRA = 8


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
    prompt_init: str = ""             # last.pt of copy-prompt (same LLM, instruction, lead, close); "" = random.
                                      # Its learnt blank, if any, becomes the token readout's.
    adapter_tokens: bool = False      # token readout over the LLM tokens of the training transcripts (adapter.py)
    token_ctc_weight: float = 1.0     # weight of the token readout's CTC loss
    llm_loss_weight: float = 1.0      # weight of the next-token loss (0: no LLM pass in training)


def transcript_vocabulary(llm: FrozenLLM, transcripts: list[str]) -> list[int]:
    """The LLM ids that tokenizing `transcripts` uses, ascending: what a token readout can emit."""
    return sorted({i for text in transcripts for i in llm.tokenizer.encode(text, add_special_tokens=False)})


class EncoderLLMModel(nn.Module):
    def __init__(self, speech_input: SpeechInput, llm: FrozenLLM, instruction: str, answer_lead: str = "",
                 answer_close: str = "", embedding_ctc_weight: float = 0.0, encoder_lr_scale: float = 1.0,
                 token_ctc_weight: float = 0.0, llm_loss_weight: float = 1.0) -> None:
        super().__init__()
        self.speech_input = speech_input
        self.llm = llm
        self.form = TranscriptForm(llm, instruction, answer_lead, answer_close)
        self.embedding_ctc_weight = embedding_ctc_weight
        self.token_ctc_weight = token_ctc_weight if self.readout is not None else 0.0
        self.llm_loss_weight = llm_loss_weight
        if not (self.llm_loss_weight or self.token_ctc_weight or self.embedding_ctc_weight):
            raise FreezeOmniError("every loss of stage 2 has weight 0 (llm_loss_weight, token_ctc_weight with "
                                  "adapter_tokens, embedding_ctc_weight)")
        self.lr_scales = {"speech_input.encoder.": encoder_lr_scale}  # read by the training loop

    @property
    def readout(self) -> TokenReadout | None:
        return self.speech_input.adapter.readout

    def target_ids(self, transcript: str) -> list[int]:
        return self.form.target_ids(self.llm, transcript)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, targets: list[torch.Tensor],
                chunk_size: int, left_chunks: int, token_classes: list[torch.Tensor] | None = None):
        out = self.speech_input.adapt(feats, lengths, chunk_size, left_chunks)
        speech = [out.embeds[i, : int(n)] for i, n in enumerate(out.lengths)]
        loss, metrics = feats.new_zeros(()), {}
        if self.llm_loss_weight:
            packed = self.form.rows(self.llm, self.speech_input.prompt, speech, targets)
            hidden = self.llm(packed.embeds, packed.attention_mask.to(feats.device))
            labels = packed.labels.to(feats.device)
            llm_loss, metrics["token_accuracy"] = next_token_loss(hidden, labels, self.llm.logits)
            loss = loss + self.llm_loss_weight * llm_loss
        if self.token_ctc_weight:
            ctc = token_ctc_loss(out.log_probs, out.lengths, token_classes)
            loss = loss + self.token_ctc_weight * ctc
            metrics["token_ctc"] = ctc.item()
        if self.embedding_ctc_weight:
            ctc = embedding_ctc_loss(speech, [t[:-1] for t in targets], self.llm.model.embed.weight)
            loss = loss + self.embedding_ctc_weight * ctc
            metrics["embedding_ctc"] = ctc.item()
        return loss, metrics

    @torch.no_grad()
    def token_transcripts(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int,
                          left_chunks: int) -> list[str]:
        """The token readout's greedy CTC transcripts (no LLM)."""
        out = self.speech_input.adapt(feats, lengths, chunk_size, left_chunks)
        return [self.llm.tokenizer.decode(ids).strip() for ids in self.readout.greedy_ids(out.log_probs, out.lengths)]

    @torch.no_grad()
    def transcribe(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int, left_chunks: int,
                   max_tokens: int = 80) -> list[str]:
        embeds, embed_lengths = self.speech_input(feats, lengths, chunk_size, left_chunks)
        return [self.form.read(self.llm, self.speech_input.prompt, embeds[i, :n],
                               min(max_tokens, int(n * TRANSCRIPT_TOKENS_PER_EMBEDDING) + TRANSCRIPT_TOKENS_EXTRA))
                for i, n in enumerate(embed_lengths.tolist())]


def token_ctc_loss(log_probs: torch.Tensor, lengths: torch.Tensor, classes: list[torch.Tensor]) -> torch.Tensor:
    """CTC of a token readout's log-posteriors [b, t, vocabulary + 1] on each row's target classes
    (1-based; 0 is the blank), per target token."""
    target_lengths = torch.tensor([c.numel() for c in classes])
    loss = nn.functional.ctc_loss(log_probs.transpose(0, 1), torch.cat(classes), lengths, target_lengths,
                                  reduction="sum", zero_infinity=True)
    return loss / target_lengths.sum().clamp_min(1)


def load_speech_input(settings: EncoderLLMSettings, llm: FrozenLLM, vocabulary: list[int] | None = None) -> SpeechInput:
    """The speech side stage 2 starts from; a token readout over `vocabulary` (LLM ids), by default the
    tokens of the corpus's training transcripts."""
    encoder = build_encoder(settings.init)
    if settings.encoder_checkpoint:
        path = Path(settings.encoder_checkpoint)
        if not path.is_file():
            raise FreezeOmniError(f"{path}: no such encoder checkpoint (run `freeze-omni train encoder-ctc` first)")
        state = torch.load(path, map_location="cpu", weights_only=False)["model"]
        encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")})
    if vocabulary is None:
        spoken = [u.text for u in settings.train_utterances()] if settings.adapter_tokens else []
        vocabulary = transcript_vocabulary(llm, spoken)
    speech_input = SpeechInput(encoder, llm.hidden_size, settings.prompt_length, settings.adapter_norm, len(vocabulary))
    if vocabulary:
        speech_input.adapter.readout.set_vocabulary(vocabulary)
        speech_input.attach_llm(llm.model.embed.weight)
    if settings.adapter_norm:
        speech_input.adapter.match_embedding_scale(llm.model.embed.weight)
    speech_input.encoder.requires_grad_(settings.train_encoder)
    return speech_input


def build_model(settings: EncoderLLMSettings, llm: FrozenLLM | None = None,
                vocabulary: list[int] | None = None) -> EncoderLLMModel:
    llm = llm or FrozenLLM.load(settings.llm or None, dtype=getattr(torch, settings.llm_dtype))
    speech_input = load_speech_input(settings, llm, vocabulary)
    if settings.prompt_init:
        form = CopyPromptSettings(llm=settings.llm, instruction=settings.instruction, answer_lead=settings.answer_lead,
                                  answer_close=settings.answer_close)
        prompt, blank = trained_prompt(settings.prompt_init, form)
        if prompt.shape != speech_input.prompt.shape:
            raise FreezeOmniError(f"{settings.prompt_init}: prompt of shape {tuple(prompt.shape)}, this stage has "
                                  f"{tuple(speech_input.prompt.shape)} (prompt_length)")
        speech_input.prompt.data.copy_(prompt)
        if blank is not None and speech_input.adapter.readout is not None:
            speech_input.adapter.readout.blank.data.copy_(blank)
    return EncoderLLMModel(speech_input, llm, settings.instruction, settings.answer_lead,
                           settings.answer_close, settings.embedding_ctc_weight, settings.encoder_lr_scale,
                           settings.token_ctc_weight, settings.llm_loss_weight)


class EncoderLLMStage(ChunkedSpeechData):
    def __init__(self, settings: EncoderLLMSettings, llm: FrozenLLM | None = None) -> None:
        self.module = build_model(settings, llm)
        super().__init__(settings, featurizer(self.module.speech_input.encoder.config))
        self.chunk_160ms = chunk_frames_160ms(self.module.speech_input.encoder)
        readout = self.module.readout
        # LLM id -> the token readout's class (1-based; 0 is the blank)
        self.token_class = {} if readout is None else {i: c + 1 for c, i in enumerate(readout.token_ids.tolist())}

    def load(self, spec: BatchSpec, device: torch.device) -> dict[str, Any]:
        feats, lengths, texts = self.training_features(spec)
        targets = [torch.tensor(self.module.target_ids(t), device=device) for t in texts]
        batch = {"feats": feats.to(device), "lengths": lengths.to(device), "targets": targets,
                 "chunk_size": spec[1], "left_chunks": spec[2]}
        if self.module.readout is not None:
            ids = [self.module.llm.tokenizer.encode(t, add_special_tokens=False) for t in texts]
            batch["token_classes"] = [torch.tensor([self.token_class[i] for i in row], device=device) for row in ids]
        return batch

    def evaluate(self, module: EncoderLLMModel) -> dict[str, float]:
        """WER of the LLM's transcripts of held-out speech heard in 160 ms chunks."""
        refs, hyps, token_hyps = [], [], []
        for feats, lengths, texts in self.dev_batches():
            refs += texts
            hyps += module.transcribe(feats, lengths, self.chunk_160ms, UNLIMITED)
            if module.readout is not None:
                token_hyps += module.token_transcripts(feats, lengths, self.chunk_160ms, UNLIMITED)
        rates = error_rates(refs, hyps)
        result = {"wer_160ms": rates.wer, "cer_160ms": rates.cer}
        if token_hyps:
            result["token_ctc_wer_160ms"] = error_rates(refs, token_hyps).wer
        return result
