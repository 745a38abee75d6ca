"""Speech -> LLM input embeddings: streaming encoder, adapter and the trainable prompt embeddings.

This is the whole trained input side of the model. `forward` runs padded batches under a chunk
mask (training); `step` runs one stream with an explicit `SpeechInputCache` (serving), and equals
`forward` with the same chunk mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from freeze_omni.adapter import Adapter, AdapterCache, AdapterConfig, AdapterOutput
from freeze_omni.encoder import EncoderCache, EncoderOutput, SpeechEncoder


@dataclass
class SpeechInputCache:
    encoder: EncoderCache
    adapter: AdapterCache


class SpeechInput(nn.Module):
    def __init__(self, encoder: SpeechEncoder, llm_hidden_size: int, prompt_length: int = 4,
                 adapter_norm: bool = False, vocabulary: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.adapter = Adapter(AdapterConfig.for_encoder(encoder.config, llm_hidden_size, adapter_norm, vocabulary))
        # Placed right after the user-turn start, before the speech: they tell the frozen LLM that
        # what follows is speech (the published system's trainable special tokens).
        self.prompt = nn.Parameter(torch.randn(prompt_length, llm_hidden_size) * 0.02)

    def attach_llm(self, embedding: torch.Tensor) -> None:
        """Give a token readout (adapter `vocabulary` > 0) the frozen LLM's input embedding table."""
        if self.adapter.readout is not None:
            self.adapter.readout.attach(embedding)

    def adapt(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int, left_chunks: int) -> AdapterOutput:
        """feats [b, t, n_mels], lengths [b] -> the adapter's output under the chunk mask."""
        return self.encode_and_adapt(feats, lengths, chunk_size, left_chunks)[1]

    def encode_and_adapt(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int,
                         left_chunks: int) -> tuple[EncoderOutput, AdapterOutput]:
        """Also the encoder frames the adapter read (what an acoustic state head reads)."""
        frames = self.encoder(feats, lengths, chunk_size, left_chunks)
        return frames, self.adapter(frames.frames, frames.lengths)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int,
                left_chunks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [b, t, n_mels], lengths [b] -> embeddings [b, n, hidden] and valid lengths [b]."""
        out = self.adapt(feats, lengths, chunk_size, left_chunks)
        return out.embeds, out.lengths

    def initial_cache(self, chunk_size: int, left_chunks: int, device: torch.device | str = "cpu") -> SpeechInputCache:
        return SpeechInputCache(self.encoder.initial_cache(chunk_size, left_chunks, device=device),
                                self.adapter.initial_cache(device=device))

    def step(self, feats: torch.Tensor,
             cache: SpeechInputCache) -> tuple[torch.Tensor, torch.Tensor, SpeechInputCache]:
        """feats [1, t, n_mels] -> the embeddings completed so far [1, n, hidden] and the encoder
        frames of these features [1, t', d] (what an acoustic state head reads)."""
        frames, encoder_cache = self.encoder.step(feats, cache.encoder)
        embeds, adapter_cache = self.adapter.step(frames, cache.adapter)
        return embeds, frames, SpeechInputCache(encoder_cache, adapter_cache)
