"""`FrozenLLM`: the text LLM that is never trained, behind the small API the speech parts need.

Token embeddings in, hidden states out, with an explicit per-session `KVCache`. Every weight is
frozen (requires_grad False, eval mode); gradients still flow through it to the speech encoder
and adapter at training time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from freeze_omni.llm.chat_template import ChatTemplate
from freeze_omni.llm.kv_cache import KVCache
from freeze_omni.llm.loading import fused_weights_path, load_state_dict, resolve_model_dir
from freeze_omni.llm.modeling import DecoderLM, LLMConfig, attention_dtype
from freeze_omni.llm.sampling import SamplingConfig, sample


@dataclass
class StepOutput:
    logits: torch.Tensor  # [batch, vocab] for the last position
    hidden: torch.Tensor  # [batch, hidden] final-norm hidden state of the last position


class FrozenLLM(nn.Module):
    def __init__(self, model: DecoderLM, tokenizer, name: str) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.template = ChatTemplate.from_tokenizer(tokenizer)
        eos = {tokenizer.eos_token_id, *self.template.assistant_end[:1]}
        self.stop_ids = frozenset(i for i in eos if i is not None)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def load(cls, source: str | Path | None = None, dtype: torch.dtype = torch.bfloat16,
             device: torch.device | str = "cpu") -> "FrozenLLM":
        """A Hugging Face model directory, a GGUF file, or (None) the default SmolLM2-135M-Instruct.

        bfloat16 by default: decoding is bound by reading weights, and half the bytes is twice the
        speed on a CPU with AVX-512 bf16 (measured by `freeze-omni bench llm`). The fused weights
        are cached per dtype, so later starts only map a file.
        """
        from transformers import AutoTokenizer

        model_dir = resolve_model_dir(source)
        fused = fused_weights_path(model_dir, dtype)
        if fused.is_file():
            model = load_fused(fused)
        else:
            from transformers import AutoConfig

            model = build_decoder(AutoConfig.from_pretrained(model_dir), load_state_dict(model_dir), dtype)
            save_fused(fused, model)
        return cls(model.to(device=device), AutoTokenizer.from_pretrained(model_dir), name=model_dir.name)

    @classmethod
    def from_hf_model(cls, hf_model, tokenizer, name: str = "in-memory") -> "FrozenLLM":
        """Wrap a transformers causal LM object (used for tiny random models in tests)."""
        model = build_decoder(hf_model.config, hf_model.state_dict(), next(hf_model.parameters()).dtype)
        return cls(model, tokenizer, name)

    def quantize_int8(self) -> "FrozenLLM":
        """Inference only: int8 projection weights (`int8.py`); a decode step took 36 instead of
        53 ms on this project's CPU. In place; returns self."""
        from freeze_omni.llm.int8 import quantize_int8

        quantize_int8(self.model)
        return self

    def train(self, mode: bool = True) -> "FrozenLLM":
        """The backbone stays in eval mode whatever its parent module does."""
        return super().train(False)

    # ---- properties ---------------------------------------------------------------------------
    @property
    def config(self) -> LLMConfig:
        return self.model.cfg

    @property
    def hidden_size(self) -> int:
        return self.model.cfg.hidden_size

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.embed.weight.device

    @property
    def cache_dtype(self) -> torch.dtype:
        """What the KV cache holds (`modeling.attention_dtype`)."""
        return attention_dtype(self.device, self.dtype)

    # ---- the API the speech parts use ---------------------------------------------------------
    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """[batch, t] ids -> [batch, t, hidden] input embeddings."""
        return self.model.embed(token_ids.to(self.device))

    def embed_ids(self, ids: list[int]) -> torch.Tensor:
        return self.embed(torch.tensor([ids], dtype=torch.long))

    def new_cache(self, batch: int = 1, capacity: int = 512) -> KVCache:
        cfg = self.config
        return KVCache.empty(cfg.num_layers, batch, cfg.num_kv_heads, cfg.head_dim, capacity, self.cache_dtype,
                             self.device)

    def prefill(self, embeds: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Append input embeddings [batch, t, hidden] to the session; returns their hidden states."""
        return self.model(embeds.to(self.dtype), cache=cache)

    def prefill_sessions(self, embeds: list[torch.Tensor], caches: list[KVCache]) -> list[torch.Tensor]:
        """`prefill` for several sessions in one forward pass: embeds[i] [1, t_i, hidden] goes after
        caches[i] (each a one-row cache of its own); returns each one's hidden states [1, t_i, hidden]."""
        if len(embeds) != len(caches) or not caches:
            raise ValueError(f"need one cache per input, got {len(embeds)} inputs and {len(caches)} caches")
        if any(e.dim() != 3 or e.shape[0] != 1 for e in embeds) or any(c.keys.shape[1] != 1 for c in caches):
            raise ValueError("prefill_sessions takes one row per session")
        hidden = self.model.forward_sessions([e[0].to(self.dtype) for e in embeds], caches)
        return [h[None] for h in hidden]

    def decode_step(self, token_ids: torch.Tensor, cache: KVCache) -> StepOutput:
        """Feed one token per row ([batch] ids); logits and hidden state of that position."""
        hidden = self.model(self.embed(token_ids.view(-1, 1)), cache=cache)[:, -1]
        return StepOutput(logits=self.model.lm_head(hidden), hidden=hidden)

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Training path: whole right-padded sequences, no cache. [b, t, hidden] -> [b, t, hidden]."""
        return self.model(embeds.to(self.dtype), attention_mask=attention_mask)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(hidden)

    def generate(self, prompt_ids: list[int], cache: KVCache, sampling: SamplingConfig = SamplingConfig(),
                 max_new_tokens: int = 128, generator: torch.Generator | None = None):
        """Prefill `prompt_ids`, then yield (token_id, hidden) until a stop token or the limit."""
        yield from self.generate_from_embeds(self.embed_ids(prompt_ids), cache, sampling, max_new_tokens, generator)

    def generate_from_embeds(self, embeds: torch.Tensor, cache: KVCache, sampling: SamplingConfig = SamplingConfig(),
                             max_new_tokens: int = 128, generator: torch.Generator | None = None):
        """Prefill input embeddings [1, t, hidden] (speech, text or both), then yield (token_id, hidden).

        The stop token is fed to the cache too, so the conversation can continue after it.
        """
        hidden = self.prefill(embeds, cache)[:, -1]
        logits = self.model.lm_head(hidden)
        for _ in range(max_new_tokens):
            token = sample(logits, sampling, generator)
            step = self.decode_step(token, cache)
            yield int(token[0]), step.hidden[0]
            if int(token[0]) in self.stop_ids:
                return
            logits = step.logits


def build_decoder(hf_config, state: dict[str, torch.Tensor], dtype: torch.dtype) -> DecoderLM:
    """Our explicit decoder from a transformers config and its state dict (q/k/v and gate/up fused)."""
    cfg = LLMConfig.from_hf(hf_config)
    inv_freq, scaling = _rope_frequencies(hf_config)
    state = {name: value.to(dtype) for name, value in state.items()}
    prefix = "model."
    mapped = {"embed.weight": state[prefix + "embed_tokens.weight"], "norm.weight": state[prefix + "norm.weight"]}
    for i in range(cfg.num_layers):
        src, dst = f"{prefix}layers.{i}.", f"blocks.{i}."
        attn = src + "self_attn."
        mapped[dst + "attn.qkv.weight"] = torch.cat([state[attn + f"{p}_proj.weight"] for p in "qkv"])
        if cfg.attention_bias:
            mapped[dst + "attn.qkv.bias"] = torch.cat([state[attn + f"{p}_proj.bias"] for p in "qkv"])
        mapped[dst + "attn.out.weight"] = state[attn + "o_proj.weight"]
        if cfg.qk_norm:
            mapped[dst + "attn.q_norm.weight"] = state[attn + "q_norm.weight"]
            mapped[dst + "attn.k_norm.weight"] = state[attn + "k_norm.weight"]
        mapped[dst + "mlp.gate_up.weight"] = torch.cat([state[src + "mlp.gate_proj.weight"], state[src + "mlp.up_proj.weight"]])
        mapped[dst + "mlp.down.weight"] = state[src + "mlp.down_proj.weight"]
        mapped[dst + "attn_norm.weight"] = state[src + "input_layernorm.weight"]
        mapped[dst + "mlp_norm.weight"] = state[src + "post_attention_layernorm.weight"]
    if not cfg.tie_word_embeddings:
        mapped["lm_head.weight"] = state["lm_head.weight"]
    return decoder_from_weights(cfg, inv_freq, scaling, mapped)


def decoder_from_weights(cfg: LLMConfig, inv_freq: torch.Tensor, scaling: float,
                         weights: dict[str, torch.Tensor]) -> DecoderLM:
    """Modules are built on the meta device and take the given tensors as they are: random
    initialisation of 135M parameters would cost seconds at every start."""
    with torch.device("meta"):
        model = DecoderLM(cfg, inv_freq, scaling)
    if cfg.tie_word_embeddings:
        weights = {**weights, "lm_head.weight": weights["embed.weight"]}
    model.load_state_dict(weights, strict=True, assign=True)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.embed.weight
    model.inv_freq = inv_freq.float().clone()
    return model


def save_fused(path: Path, model: DecoderLM) -> None:
    """Our fused weights + config in one safetensors file (tied lm_head stored once)."""
    weights = {k: v.contiguous() for k, v in model.state_dict().items()
               if not (model.cfg.tie_word_embeddings and k == "lm_head.weight")}
    weights["inv_freq"] = model.inv_freq
    metadata = {"config": json.dumps(asdict(model.cfg)), "rope_scaling": repr(model.rope_scaling)}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file(weights, str(partial), metadata=metadata)
    partial.rename(path)


def load_fused(path: Path) -> DecoderLM:
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    weights = load_file(str(path))
    inv_freq = weights.pop("inv_freq")
    cfg = LLMConfig(**json.loads(metadata["config"]))
    return decoder_from_weights(cfg, inv_freq, float(metadata["rope_scaling"]), weights)


def _rope_frequencies(hf_config) -> tuple[torch.Tensor, float]:
    """Rotary inverse frequencies and scaling exactly as transformers computes them (any rope type)."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    params = getattr(hf_config, "rope_parameters", None) or {}
    rope_type = params.get("rope_type", "default")
    if rope_type != "default":
        inv_freq, scaling = ROPE_INIT_FUNCTIONS[rope_type](hf_config)
        return inv_freq, float(scaling)
    theta = params.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    return 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim), 1.0

