"""Pre-norm transformer block with a key/value cache (Whisper's encoder layer layout).

The same block runs a padded batch under a chunk mask (training) and one chunk at a time against
a `LayerCache` of earlier keys and values (streaming); only the key set differs, so the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LayerCache:
    """Keys and values of the frames a later chunk may still attend to, [batch, heads, frames, head_dim]."""

    key: torch.Tensor
    value: torch.Tensor

    @property
    def frames(self) -> int:
        return self.key.shape[2]

    def append(self, key: torch.Tensor, value: torch.Tensor) -> "LayerCache":
        return LayerCache(torch.cat([self.key, key], dim=2), torch.cat([self.value, value], dim=2))

    def keep_last(self, frames: int) -> "LayerCache":
        start = self.frames - frames
        return LayerCache(self.key[:, :, start:], self.value[:, :, start:])


class SelfAttention(nn.Module):
    """Multi-head self-attention with fused q/k/v (Whisper has no key bias: its k bias loads as zeros)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"model width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                cache: LayerCache | None = None) -> tuple[torch.Tensor, LayerCache]:
        """x [b, t, dim]; mask broadcastable to [b, heads, t, cached + t] (True = attend).

        Returns the output and the cache extended by this call's keys and values.
        """
        b, t, dim = x.shape
        q, k, v = (z.view(b, t, self.heads, dim // self.heads).transpose(1, 2) for z in self.qkv(x).chunk(3, dim=-1))
        new_cache = LayerCache(k, v) if cache is None else cache.append(k, v)
        y = F.scaled_dot_product_attention(q, new_cache.key, new_cache.value, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, t, dim)), new_cache


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=eps)
        self.attn = SelfAttention(dim, heads)
        self.mlp_norm = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, ffn_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                cache: LayerCache | None = None) -> tuple[torch.Tensor, LayerCache]:
        y, cache = self.attn(self.attn_norm(x), mask, cache)
        x = x + self.dropout(y)
        return x + self.dropout(self.mlp(self.mlp_norm(x))), cache
