"""A Llama-family decoder written out explicitly (Llama, Mistral, Qwen2, Qwen3, SmolLM).

We run the frozen LLM with our own forward instead of the transformers one for two reasons: the
per-session `KVCache` is preallocated and written in place (the generic cache machinery costs more
than the model on a 2-core CPU), and q/k/v and gate/up projections are fused into one matmul
each. Sizes come only from the backbone's config; `tests/test_llm_backbone.py` checks that the
result equals the transformers implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from freeze_omni.errors import FreezeOmniError
from freeze_omni.llm.kv_cache import KVCache

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


@dataclass(frozen=True)
class LLMConfig:
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    attention_bias: bool
    qk_norm: bool
    tie_word_embeddings: bool

    @classmethod
    def from_hf(cls, hf) -> "LLMConfig":
        if hf.model_type not in SUPPORTED_MODEL_TYPES:
            raise FreezeOmniError(
                f"LLM type {hf.model_type!r} is not supported; use one of {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        if getattr(hf, "hidden_act", "silu") != "silu":
            raise FreezeOmniError(f"LLM activation {hf.hidden_act!r} is not supported (expected silu)")
        heads = hf.num_attention_heads
        return cls(
            model_type=hf.model_type,
            vocab_size=hf.vocab_size,
            hidden_size=hf.hidden_size,
            intermediate_size=hf.intermediate_size,
            num_layers=hf.num_hidden_layers,
            num_heads=heads,
            num_kv_heads=getattr(hf, "num_key_value_heads", None) or heads,
            head_dim=getattr(hf, "head_dim", None) or hf.hidden_size // heads,
            rms_norm_eps=hf.rms_norm_eps,
            # Qwen2 has q/k/v biases without saying so in its config.
            attention_bias=bool(getattr(hf, "attention_bias", hf.model_type == "qwen2")),
            qk_norm=hf.model_type == "qwen3",
            tie_word_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
        )


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


@dataclass(frozen=True)
class Span:
    """One sequence of a forward pass: where it lies on the time axis, its attention mask, the cache it extends."""

    positions: slice
    mask: torch.Tensor | None
    cache: KVCache | None


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def attention_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """Attention, and so the KV cache, runs in float32 on a CPU: there its bfloat16 attention is
    several times slower (one query over 350 cached positions: ~0.8 ms against ~0.12 ms), while
    the projections are fastest in the model's dtype (int8 weights included). Elsewhere it keeps
    the model's dtype."""
    return torch.float32 if device.type == "cpu" else dtype


class Attention(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden_size, q + 2 * kv, bias=cfg.attention_bias)
        self.out = nn.Linear(q, cfg.hidden_size, bias=False)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps) if cfg.qk_norm else None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, spans: list[Span],
                layer: int) -> torch.Tensor:
        """Projections run on all positions at once; attention runs per span, on its own cache."""
        cfg = self.cfg
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split(
            [cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim], dim=-1)
        q = q.view(b, t, cfg.num_heads, cfg.head_dim).transpose(1, 2)     # [b, heads, t, hd]
        k = k.view(b, t, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)  # [b, kv_heads, t, hd]
        v = v.view(b, t, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        dtype = attention_dtype(x.device, x.dtype)
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        ys = []
        for span in spans:
            ks, vs = k[:, :, span.positions], v[:, :, span.positions]
            if span.cache is not None:
                ks, vs = span.cache.write(layer, ks, vs)
            ys.append(F.scaled_dot_product_attention(q[:, :, span.positions], ks, vs, attn_mask=span.mask,
                                                     enable_gqa=cfg.num_kv_heads != cfg.num_heads))
        y = (ys[0] if len(ys) == 1 else torch.cat(ys, dim=2)).to(x.dtype)
        return self.out(y.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.down = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, spans, layer):
        x = x + self.attn(self.attn_norm(x), cos, sin, spans, layer)
        return x + self.mlp(self.mlp_norm(x))


class DecoderLM(nn.Module):
    """Token embeddings -> decoder blocks -> final norm; `lm_head` is applied only where logits are needed."""

    def __init__(self, cfg: LLMConfig, inv_freq: torch.Tensor, rope_scaling: float = 1.0) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.embed.weight
        self.register_buffer("inv_freq", inv_freq.float().clone(), persistent=False)
        self.rope_scaling = rope_scaling

    def rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [b, t] -> cos, sin [b, 1, t, head_dim]."""
        freqs = positions.float()[..., None] * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]
        return (emb.cos() * self.rope_scaling).to(dtype), (emb.sin() * self.rope_scaling).to(dtype)

    def forward(self, embeds: torch.Tensor, cache: KVCache | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """embeds [b, t, hidden] -> final-norm hidden states [b, t, hidden].

        With a cache the new positions follow the cached ones (all rows share one length); without
        one, `attention_mask` [b, t] (1 = real, 0 = padding on the right) marks padded rows.
        """
        b, t, _ = embeds.shape
        past = cache.length if cache is not None else 0
        positions = torch.arange(past, past + t, device=embeds.device).expand(b, t)
        span = Span(slice(None), self._mask(b, t, past, attention_mask, embeds.device), cache)
        return self._run(embeds, positions, [span])

    def forward_sessions(self, embeds: list[torch.Tensor], caches: list[KVCache]) -> list[torch.Tensor]:
        """Several sessions in one pass: embeds[i] [t_i, hidden] follows caches[i] (one row each).

        The sequences are laid end to end, so every matmul runs once over all of them (on a CPU
        a decode step costs about the same for one row or a few); only attention is per session.
        Returns the final-norm hidden states [t_i, hidden] of each.
        """
        lengths = [e.shape[0] for e in embeds]
        device = embeds[0].device
        positions = torch.cat([torch.arange(c.length, c.length + n, device=device) for c, n in zip(caches, lengths)])
        spans, start = [], 0
        for cache, n in zip(caches, lengths):
            spans.append(Span(slice(start, start + n), self._mask(1, n, cache.length, None, device), cache))
            start += n
        hidden = self._run(torch.cat(embeds)[None], positions[None], spans)[0]
        return list(hidden.split(lengths))

    def _run(self, x: torch.Tensor, positions: torch.Tensor, spans: list[Span]) -> torch.Tensor:
        cached = [(span.cache, len(range(*span.positions.indices(x.shape[1])))) for span in spans
                  if span.cache is not None]
        if len({id(cache) for cache, _ in cached}) < len(cached):
            raise ValueError("a cache may be extended only once per pass")
        for cache, n in cached:
            cache.reserve(n)
        cos, sin = self.rope(positions, x.dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, spans, i)
        for cache, n in cached:
            cache.advance(n)
        return self.norm(x)

    @staticmethod
    def _mask(b: int, t: int, past: int, attention_mask: torch.Tensor | None, device) -> torch.Tensor | None:
        """Boolean [b or 1, 1, t, past + t] mask (True = may attend), or None for a single new position."""
        if t == 1 and attention_mask is None:
            return None
        query = torch.arange(past, past + t, device=device)[:, None]
        key = torch.arange(past + t, device=device)[None, :]
        mask = (key <= query)[None, None]
        if attention_mask is not None:
            mask = mask & attention_mask.bool()[:, None, None, :]
        return mask
