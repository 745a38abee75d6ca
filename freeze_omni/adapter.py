"""Adapter: encoder frames -> LLM input embeddings at about 12.5 per second.

A stack of causal stride-2 convolutions (one per halving: Whisper's 50 frames/s need two, the
from-scratch encoder's 25 frames/s one) followed by a linear map to the LLM's hidden size, which
always comes from the backbone's config. With `output_norm`, each embedding is RMS-normalised and
scaled by a learnt gain that starts at the RMS of the LLM's own token embeddings: the frozen LLM
then reads speech at the magnitude its embeddings have from the first step, instead of frames
several times larger that dominate its residual stream. Output t of a convolution reads inputs 2t - k + 2 ..
2t + 1, so it is complete as soon as the second frame of its pair arrives: a 160 ms encoder chunk
gives exactly two embeddings with nothing held back. `step` carries the input frames later
windows still need (`AdapterCache`) and equals `forward` for any split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from freeze_omni.encoder import EncoderConfig
from freeze_omni.encoder.subsampling import CausalConv1d

FEATURE_RATE = 100.0  # feature frames per second (10 ms hop)
LLM_RATE = 12.5  # embeddings per second into the LLM, as in the published system


@dataclass(frozen=True)
class AdapterConfig:
    input_dim: int  # encoder width
    output_dim: int  # the LLM's hidden size
    layers: int = 1  # stride-2 convolutions: the rate drops by 2 ** layers
    kernel_size: int = 5
    output_norm: bool = False  # RMS-normalise the output (see the module docstring)

    @classmethod
    def for_encoder(cls, encoder: EncoderConfig, llm_hidden_size: int, output_norm: bool = False) -> "AdapterConfig":
        """Enough halvings to bring the encoder's frame rate down to `LLM_RATE`."""
        ratio = FEATURE_RATE / encoder.subsampling / LLM_RATE
        layers = round(ratio).bit_length() - 1
        if 2 ** layers != ratio:
            raise ValueError(f"encoder rate {FEATURE_RATE / encoder.subsampling} Hz is not a power-of-two multiple of {LLM_RATE} Hz")
        return cls(input_dim=encoder.dim, output_dim=llm_hidden_size, layers=layers, output_norm=output_norm)


@dataclass
class AdapterCache:
    """Per convolution, the input frames ([b, channels, frames]) that its next windows still need."""

    carries: list[torch.Tensor]


@dataclass
class AdapterOutput:
    embeds: torch.Tensor  # [b, t, output_dim]
    lengths: torch.Tensor  # [b]


class Adapter(nn.Module):
    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.convs = nn.ModuleList(
            CausalConv1d(config.input_dim, config.input_dim, config.kernel_size, stride=2, left_pad=config.kernel_size - 2)
            for _ in range(config.layers))
        self.proj = nn.Linear(config.input_dim, config.output_dim)
        self.norm = nn.RMSNorm(config.output_dim) if config.output_norm else None

    def match_embedding_scale(self, embedding: torch.Tensor) -> None:
        """Start the output gain at the RMS of `embedding` [vocab, output_dim] (the LLM's table)."""
        if self.norm is None:
            raise ValueError("this adapter has no output norm to scale")
        with torch.no_grad():
            self.norm.weight.fill_(float(embedding.float().pow(2).mean().sqrt()))

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """[b, input_dim, t] convolution output -> [b, t, output_dim] embeddings."""
        out = self.proj(x.transpose(1, 2))
        return self.norm(out) if self.norm is not None else out

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> AdapterOutput:
        """frames [b, t, input_dim] (padded), lengths [b] -> embeddings [b, t / 2 ** layers, output_dim]."""
        x = frames.transpose(1, 2)
        for conv in self.convs:
            x = F.gelu(conv.causal(x))
            lengths = lengths // 2
        return AdapterOutput(self._project(x), lengths)

    def initial_cache(self, batch: int = 1, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> AdapterCache:
        return AdapterCache([conv.initial_carry(batch, torch.device(device), dtype) for conv in self.convs])

    def step(self, frames: torch.Tensor, cache: AdapterCache) -> tuple[torch.Tensor, AdapterCache]:
        """frames [b, t, input_dim] (any t >= 0) -> the embeddings completed so far, [b, n, output_dim]."""
        x = frames.transpose(1, 2)
        carries = []
        for conv, carry in zip(self.convs, cache.carries):
            x, carry = conv.step(x, carry)
            x = F.gelu(x)
            carries.append(carry)
        return self._project(x), AdapterCache(carries)
