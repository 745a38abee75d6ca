"""Input stage 1: the speech encoder learns to work chunk by chunk, with a CTC character head.

Starting from Whisper tiny.en (trained on real speech), the causal front end and the chunk masks
are new to it; dynamic chunk training (one random chunk size and left context per batch, some
batches unmasked) teaches one model every latency. From scratch, the same stage trains the
published design. Evaluation: greedy CTC WER on held-out utterances at 160 ms chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from freeze_omni.encoder import FULL_CONTEXT, SCRATCH, UNLIMITED, SpeechEncoder
from freeze_omni.encoder.ctc import CTCHead, ctc_text, encode_text, greedy_decode
from freeze_omni.encoder.frontend import featurizer
from freeze_omni.encoder.whisper import load_whisper_encoder
from freeze_omni.errors import FreezeOmniError
from freeze_omni.eval.metrics import error_rates
from freeze_omni.train.data import load_feature_batch
from freeze_omni.train.stages.speech import BatchSpec, ChunkedSpeechData, SpeechDataSettings

FEATURE_FRAMES_160MS = 16


def chunk_frames_160ms(encoder: SpeechEncoder) -> int:
    """Encoder frames in one 160 ms chunk: 8 for Whisper's x2 front end, 4 for the x4 design."""
    return FEATURE_FRAMES_160MS // encoder.config.subsampling


@dataclass
class EncoderCTCSettings(SpeechDataSettings):
    init: str = "whisper-tiny.en"     # or "scratch"


class CTCModel(nn.Module):
    def __init__(self, encoder: SpeechEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = CTCHead(encoder.config.dim)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                target_lengths: torch.Tensor, chunk_size: int, left_chunks: int):
        out = self.encoder(feats, lengths, chunk_size, left_chunks)
        log_probs = self.head(out.frames)
        loss = nn.functional.ctc_loss(log_probs.transpose(0, 1), targets, out.lengths, target_lengths,
                                      zero_infinity=True)
        return loss, {"chunk": float(chunk_size)}

    def transcribe(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int, left_chunks: int) -> list[str]:
        out = self.encoder(feats, lengths, chunk_size, left_chunks)
        return greedy_decode(self.head(out.frames), out.lengths)


def build_encoder(init: str) -> SpeechEncoder:
    if init == "whisper-tiny.en":
        return load_whisper_encoder().train()
    if init == "scratch":
        return SpeechEncoder(SCRATCH)
    raise FreezeOmniError(f"unknown encoder init {init!r}; use 'whisper-tiny.en' or 'scratch'")


class EncoderCTCStage(ChunkedSpeechData):
    def __init__(self, settings: EncoderCTCSettings) -> None:
        self.module = CTCModel(build_encoder(settings.init))
        super().__init__(settings, featurizer(self.module.encoder.config))
        self.chunk_160ms = chunk_frames_160ms(self.module.encoder)
        if settings.init == "scratch":
            self._install_cmvn()

    def _install_cmvn(self) -> None:
        """Global mean / inverse std of the features over (up to) 500 training utterances."""
        indices = range(0, len(self.train_set), max(1, len(self.train_set) // 500))
        feats, lengths, _ = load_feature_batch(self.train_set, list(indices), self.featurize)
        valid = torch.arange(feats.shape[1])[None, :] < lengths[:, None]
        frames = feats[valid]
        self.module.encoder.front.set_cmvn(frames.mean(0), 1.0 / frames.std(0).clamp_min(1e-5))

    def load(self, spec: BatchSpec, device: torch.device) -> dict[str, Any]:
        feats, lengths, texts = self.training_features(spec)
        targets = [torch.tensor(encode_text(t), dtype=torch.long) for t in texts]
        return {"feats": feats.to(device), "lengths": lengths.to(device),
                "targets": torch.cat(targets).to(device),
                "target_lengths": torch.tensor([len(t) for t in targets], device=device),
                "chunk_size": spec[1], "left_chunks": spec[2]}

    def evaluate(self, module: CTCModel) -> dict[str, float]:
        """Greedy CTC WER on held-out utterances: streaming (160 ms chunks) and full context."""
        refs, streaming, offline = [], [], []
        device = next(module.parameters()).device
        for feats, lengths, texts in self.dev_batches():
            feats, lengths = feats.to(device), lengths.to(device)
            refs += [ctc_text(t) for t in texts]
            streaming += module.transcribe(feats, lengths, self.chunk_160ms, UNLIMITED)
            offline += module.transcribe(feats, lengths, FULL_CONTEXT, UNLIMITED)
        chunked = error_rates(refs, streaming)
        return {"wer_160ms": chunked.wer, "cer_160ms": chunked.cer, "wer_full": error_rates(refs, offline).wer}
