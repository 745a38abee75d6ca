"""The streaming speech encoder: conv front end + sinusoidal positions + chunk-masked transformer.

One module, two configurations (`WHISPER_TINY_EN`: Whisper tiny.en's encoder made causal;
`SCRATCH`: the published from-scratch design). Training calls `forward` on a padded batch with a
chunk mask; streaming calls `step` with whatever feature frames have arrived and an
`EncoderCache`, and `flush` at the end of an utterance. The model holds no per-stream state, and
`step` over any split of an utterance equals `forward` with the same chunk mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from freeze_omni.encoder.attention import Block, LayerCache
from freeze_omni.encoder.masks import FULL_CONTEXT, batch_mask, chunk_mask, first_needed_key
from freeze_omni.encoder.positions import sinusoids
from freeze_omni.encoder.subsampling import Conv2dSubsampling4, ConvCache, WhisperConvFrontEnd


@dataclass(frozen=True)
class EncoderConfig:
    front_end: Literal["whisper", "conv2d"]
    n_mels: int
    dim: int
    heads: int
    layers: int
    ffn_dim: int
    conv_channels: int = 0  # conv2d front end only
    eps: float = 1e-5
    dropout: float = 0.0

    @property
    def subsampling(self) -> int:
        return 2 if self.front_end == "whisper" else 4


WHISPER_TINY_EN = EncoderConfig("whisper", n_mels=80, dim=384, heads=6, layers=4, ffn_dim=1536)
SCRATCH = EncoderConfig("conv2d", n_mels=80, dim=256, heads=4, layers=6, ffn_dim=1024, conv_channels=256, dropout=0.1)


@dataclass
class EncoderCache:
    """Everything one stream carries between `step` calls."""

    conv: ConvCache
    layers: list[LayerCache]
    pending: torch.Tensor  # [b, n, dim] front-end frames waiting for their chunk to complete
    offset: int  # frames already through the transformer = absolute position of pending[:, 0]
    chunk_size: int  # frames after subsampling; FULL_CONTEXT waits for `flush`
    left_chunks: int


@dataclass
class EncoderOutput:
    frames: torch.Tensor  # [b, t, dim]
    lengths: torch.Tensor  # [b] valid frames per row


class SpeechEncoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        if config.front_end == "whisper":
            self.front = WhisperConvFrontEnd(config.n_mels, config.dim)
        else:
            self.front = Conv2dSubsampling4(config.n_mels, config.dim, config.conv_channels)
        self.blocks = nn.ModuleList(
            Block(config.dim, config.heads, config.ffn_dim, config.eps, config.dropout) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim, eps=config.eps)

    def _positions(self, start: int, n: int, like: torch.Tensor, shift: int | None = None) -> torch.Tensor:
        """Sinusoids of frames start..start+n, moved by the front end's delay against its pretrained original."""
        first = start + (self.front.position_shift if shift is None else shift)
        return sinusoids(torch.arange(first, first + n, device=like.device), self.config.dim, like.dtype)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int, left_chunks: int) -> EncoderOutput:
        """feats [b, t, n_mels] (padded), lengths [b] -> frames [b, t / subsampling, dim] under the chunk mask."""
        x = self.front(feats)
        out_lengths = self.front.output_lengths(lengths)
        x = x + self._positions(0, x.shape[1], x)
        mask = batch_mask(out_lengths, x.shape[1], chunk_size, left_chunks)
        for block in self.blocks:
            x, _ = block(x, mask)
        return EncoderOutput(self.norm(x), out_lengths)

    def forward_original(self, feats: torch.Tensor) -> torch.Tensor:
        """Whisper's own encoder (centred convolutions, full attention): the check against the reference
        implementation and the non-streaming baseline. feats [b, t, n_mels] -> [b, t / 2, dim]."""
        if not isinstance(self.front, WhisperConvFrontEnd):
            raise TypeError("forward_original exists only for the Whisper front end")
        x = self.front.forward_centred(feats)
        x = x + self._positions(0, x.shape[1], x, shift=0)
        for block in self.blocks:
            x, _ = block(x, None)
        return self.norm(x)

    def initial_cache(self, chunk_size: int, left_chunks: int, batch: int = 1,
                      device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> EncoderCache:
        cfg = self.config
        head_dim = cfg.dim // cfg.heads
        empty_kv = torch.zeros(batch, cfg.heads, 0, head_dim, device=device, dtype=dtype)
        return EncoderCache(
            conv=self.front.initial_cache(batch, torch.device(device), dtype),
            layers=[LayerCache(empty_kv, empty_kv) for _ in range(cfg.layers)],
            pending=torch.zeros(batch, 0, cfg.dim, device=device, dtype=dtype),
            offset=0, chunk_size=chunk_size, left_chunks=left_chunks,
        )

    def step(self, feats: torch.Tensor, cache: EncoderCache) -> tuple[torch.Tensor, EncoderCache]:
        """feats [b, t, n_mels] (any t >= 0) -> the frames of every chunk completed so far, [b, n, dim].

        The b rows of one cache advance together. The given cache is left unchanged (new tensors
        are returned), so a session may keep an old cache to roll back to.
        """
        x, conv = self.front.step(feats, cache.conv)
        pending = torch.cat([cache.pending, x], dim=1)
        ready = 0 if cache.chunk_size == FULL_CONTEXT else pending.shape[1] // cache.chunk_size * cache.chunk_size
        out, layers = self._transformer_step(pending[:, :ready], cache)
        return out, EncoderCache(conv, layers, pending[:, ready:], cache.offset + ready,
                                 cache.chunk_size, cache.left_chunks)

    def flush(self, cache: EncoderCache) -> torch.Tensor:
        """End of utterance: the frames of the last, incomplete chunk, [b, n, dim]."""
        out, _ = self._transformer_step(cache.pending, cache)
        return out

    def _transformer_step(self, x: torch.Tensor, cache: EncoderCache) -> tuple[torch.Tensor, list[LayerCache]]:
        """New frames at positions offset.. through every block against the cached keys and values."""
        n = x.shape[1]
        if n == 0:
            return x, cache.layers
        start = cache.offset - cache.layers[0].frames  # absolute position of the first cached key
        queries = torch.arange(cache.offset, cache.offset + n, device=x.device)
        keys = torch.arange(start, cache.offset + n, device=x.device)
        mask = chunk_mask(queries, keys, cache.chunk_size, cache.left_chunks)
        keep = cache.offset + n - max(start, first_needed_key(cache.offset + n, cache.chunk_size, cache.left_chunks))
        x = x + self._positions(cache.offset, n, x)
        layers = []
        for block, layer_cache in zip(self.blocks, cache.layers):
            x, layer_cache = block(x, mask, layer_cache)
            layers.append(layer_cache.keep_last(keep))
        return self.norm(x), layers
