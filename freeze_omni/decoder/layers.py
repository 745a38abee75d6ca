"""Transformer pieces shared by the phoneme encoder, the NAR prefix decoder and the AR decoder.

Pre-norm blocks (RMSNorm, multi-head attention with rotary positions, GELU MLP). Attention takes
an optional prefix key/value pair per layer (prefix tuning: the NAR decoder's output) and an
optional per-layer cache (the AR decoder's step path); both are plain tensors in named tuples,
owned by the caller.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class KV(NamedTuple):
    k: torch.Tensor  # [b, heads, t, head_dim]
    v: torch.Tensor


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


@cache
def _frequencies(half: int, base: float, device: torch.device) -> torch.Tensor:
    return base ** (-torch.arange(half, device=device, dtype=torch.float32) / half)


def rotary_tables(positions: torch.Tensor, head_dim: int, dtype: torch.dtype,
                  base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [(b, 1,) t, head_dim / 2] for integer positions [t] or [b, t]. Made once per call
    and shared by queries and keys: the AR decoder's step is bound by per-op overhead."""
    angles = positions.to(torch.float32)[..., None] * _frequencies(head_dim // 2, base, positions.device)
    if angles.dim() == 3:
        angles = angles[:, None]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of x [b, heads, t, d] with tables from `rotary_tables`."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.dropout = dropout

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
                prefix: KV | None = None, cache: KV | None = None) -> tuple[torch.Tensor, KV]:
        """x [b, t, dim]; mask [b or 1, 1, t, keys] True = may attend, keys = prefix + cache + t.
        Returns the output and this call's keys/values appended to `cache` (rotary applied)."""
        q, k, v = (self.split(y) for y in self.qkv(x).chunk(3, -1))
        cos, sin = rotary_tables(positions, self.head_dim, q.dtype)
        q, k = rotary(q, cos, sin), rotary(k, cos, sin)
        if cache is not None:
            k, v = torch.cat([cache.k, k], 2), torch.cat([cache.v, v], 2)
        new_cache = KV(k, v)
        if prefix is not None:
            k, v = torch.cat([prefix.k, k], 2), torch.cat([prefix.v, v], 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        b, _, t, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, -1)), new_cache


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.attention = Attention(dim, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
                prefix: KV | None = None, cache: KV | None = None) -> tuple[torch.Tensor, KV]:
        y, new_cache = self.attention(self.norm1(x), positions, mask, prefix, cache)
        x = x + self.drop(y)
        return x + self.drop(self.mlp(self.norm2(x))), new_cache
