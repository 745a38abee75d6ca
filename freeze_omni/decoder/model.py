"""The speech decoder: phoneme encoder + NAR prefix decoder + AR decoder over codec tokens.

    phoneme ids [P] --PhonemeEncoder (bidirectional)--> states [P, dim]
    LLM hidden states [L, llm] --NARPrefix (non-causal)--> one (key, value) prefix [L] per AR layer
    AR step s reads: embedding(previous symbol) + states[pointer_s] + embedding(count_s)
              and attends to the prefix and to its own past steps (causal)
              -> logits over codes + ADVANCE + STOP

The pointer moves one phoneme id on every ADVANCE (see `alignment.py`), so the alignment is
explicit and monotonic: the decoder cannot skip or repeat words, it only chooses codes and when
to move on. `count` (tokens already emitted for the current id) lets it time each phoneme.
Without a prefix (voice alone, or before stage 3) the AR decoder works on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from freeze_omni.decoder.alignment import Vocab
from freeze_omni.decoder.layers import KV, Block, RMSNorm


@dataclass(frozen=True)
class DecoderConfig:
    codes: int = 4096  # codec vocabulary (from the codec's config)
    code_dim: int = 384  # size of one codebook vector (the codec's stack * latent dim)
    phoneme_symbols: int = 256  # Piper's num_symbols
    llm_hidden: int = 576  # hidden size of the LLM the prefix decoder reads
    dim: int = 192
    heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    prefix_layers: int = 2
    max_count: int = 31  # count embeddings; longer phonemes share the last one
    dropout: float = 0.1
    prefix_bias: float = -2.0  # initial attention bias on prefix keys: starts close to no prefix
    # initial code-logit scale (log): the default codebook's nearest codes lie ~13 apart (squared),
    # so exp(-2) = 0.135 puts neighbours ~1 logit apart
    code_log_scale: float = -2.0

    @property
    def vocab(self) -> Vocab:
        return Vocab(self.codes)


def padding_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """[b] lengths -> [b, width] True at real positions."""
    return torch.arange(width, device=lengths.device)[None] < lengths[:, None]


class PhonemeEncoder(nn.Module):
    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(config.phoneme_symbols, config.dim)
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.dropout) for _ in range(config.encoder_layers))
        self.norm = RMSNorm(config.dim)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids [b, P] (right-padded) -> states [b, P, dim]."""
        keys = padding_mask(lengths, ids.shape[1])[:, None, None, :]
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.embed(ids)
        for block in self.blocks:
            x, _ = block(x, positions, keys)
        return self.norm(x)


class NARPrefix(nn.Module):
    """LLM hidden states of a phrase's tokens -> a prefix (key, value) for every AR layer."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.input_norm = RMSNorm(config.llm_hidden)
        self.project = nn.Linear(config.llm_hidden, config.dim)
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.dropout) for _ in range(config.prefix_layers))
        self.norm = RMSNorm(config.dim)
        self.keys = nn.Linear(config.dim, config.decoder_layers * config.dim)
        self.values = nn.Linear(config.dim, config.decoder_layers * config.dim)
        nn.init.zeros_(self.values.weight)
        nn.init.zeros_(self.values.bias)
        self.bias = nn.Parameter(torch.full((config.decoder_layers,), config.prefix_bias))

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> list[KV]:
        """hidden [b, L, llm] (right-padded) -> per AR layer KV of [b, heads, L, head_dim]."""
        c = self.config
        keys = padding_mask(lengths, hidden.shape[1])[:, None, None, :]
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        x = self.project(self.input_norm(hidden.to(self.project.weight.dtype)))
        for block in self.blocks:
            x, _ = block(x, positions, keys)
        x = self.norm(x)
        b, length, _ = x.shape

        def heads(y: torch.Tensor) -> list[torch.Tensor]:
            y = y.view(b, length, c.decoder_layers, c.heads, c.dim // c.heads).permute(2, 0, 3, 1, 4)
            return list(y)

        return [KV(k, v) for k, v in zip(heads(self.keys(x)), heads(self.values(x)))]


@dataclass
class Prefix:
    """The NAR decoder's output for one batch: per-layer KV, which keys are real, learned key bias."""

    kv: list[KV]
    mask: torch.Tensor  # [b, L] True at real positions
    bias: torch.Tensor  # [layers]
    _rows: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def attention_mask(self, layer: int, causal: torch.Tensor) -> torch.Tensor:
        """causal [b or 1, 1, t, keys] bool -> float mask over (prefix + keys) with the prefix bias."""
        neg = torch.finfo(self.bias.dtype).min
        own = torch.zeros(causal.shape, dtype=self.bias.dtype, device=causal.device).masked_fill(~causal, neg)
        pre = self.key_bias(layer).expand(-1, 1, causal.shape[2], -1)
        return torch.cat([pre, own.expand(pre.shape[0], -1, -1, -1)], -1)

    def step_mask(self, layer: int, keys: int) -> torch.Tensor:
        """`attention_mask` for one new position that may see all `keys` of its own: [b, 1, 1, L + keys]."""
        pre = self.key_bias(layer)
        return torch.cat([pre, pre.new_zeros(*pre.shape[:3], keys)], -1)

    def key_bias(self, layer: int) -> torch.Tensor:
        """[b, 1, 1, L]: the bias on real prefix keys, -inf-like on padding (kept: the AR step asks every symbol)."""
        if layer not in self._rows:
            neg = torch.finfo(self.bias.dtype).min
            self._rows[layer] = torch.where(self.mask[:, None, None, :], self.bias[layer], neg)
        return self._rows[layer]


class CodebookHead(nn.Module):
    """Code logits from the codec's geometry: the decoder regresses a codebook vector q and a code's
    logit is -scale/2 * |q - code|^2 (up to a per-row constant). Codes near the right one score
    high, so an imperfect guess still sounds close, and all 4096 codes learn from every target
    through one shared regression instead of one output row each. ADVANCE and STOP are plain logits.
    The codebook (the codec's, fixed) is a buffer, so the decoder file says which codec it speaks."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.query = nn.Linear(config.dim, config.code_dim)
        self.control = nn.Linear(config.dim, 2)
        self.log_scale = nn.Parameter(torch.tensor(config.code_log_scale))
        self.register_buffer("codebook", torch.zeros(config.codes, config.code_dim))
        self._derived: tuple[tuple[int, int], torch.Tensor, torch.Tensor] | None = None

    def derived(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The codebook transposed into contiguous memory [code_dim, codes] and |code|^2 / 2 per
        code, remade only when the codebook changes: it is fixed while decoding, and these cost
        more than the rest of a step (a contiguous matrix halves the matmul's time)."""
        key = (id(self.codebook), self.codebook._version)
        if self._derived is None or self._derived[0] != key:
            self._derived = (key, self.codebook.T.contiguous(), 0.5 * (self.codebook * self.codebook).sum(-1))
        return self._derived[1], self._derived[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x, *self.derived())

    def scores(self, x: torch.Tensor, transposed: torch.Tensor, half_norms: torch.Tensor) -> torch.Tensor:
        """The logits given `derived()`'s tensors (the ONNX step passes them as constants)."""
        q = self.query(x)
        codes = (q @ transposed - half_norms) * self.log_scale.exp()
        return torch.cat([codes, self.control(x)], -1)


class ARDecoder(nn.Module):
    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        vocab = config.vocab
        self.symbols = nn.Embedding(vocab.inputs, config.dim)
        self.code_input = nn.Linear(config.code_dim, config.dim, bias=False)  # the previous code's vector
        self.counts = nn.Embedding(config.max_count + 1, config.dim)
        self.read = nn.Linear(config.dim, config.dim)
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.dropout) for _ in range(config.decoder_layers))
        self.norm = RMSNorm(config.dim)
        self.head = CodebookHead(config)

    def embed(self, inputs: torch.Tensor, states: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """previous symbols [b, t], the encoder states at the pointer [b, t, dim], counts [b, t]."""
        codebook = self.head.codebook
        vectors = codebook[inputs.clamp_max(codebook.shape[0] - 1)] * (inputs < codebook.shape[0])[..., None]
        return (self.symbols(inputs) + self.code_input(vectors) + self.read(states)
                + self.counts(count.clamp_max(self.config.max_count)))

    def forward(self, inputs: torch.Tensor, pointer: torch.Tensor, count: torch.Tensor,
                encoded: torch.Tensor, prefix: Prefix | None = None) -> torch.Tensor:
        """Teacher forcing over right-padded rows [b, t] -> logits [b, t, outputs]."""
        states = encoded.gather(1, pointer[..., None].expand(-1, -1, encoded.shape[-1]))
        x = self.embed(inputs, states, count)
        t = inputs.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()[None, None]
        positions = torch.arange(t, device=x.device)
        for i, block in enumerate(self.blocks):
            mask = causal if prefix is None else prefix.attention_mask(i, causal)
            x, _ = block(x, positions, mask, None if prefix is None else prefix.kv[i])
        return self.head(self.norm(x))

    def step(self, symbol: torch.Tensor, state: torch.Tensor, count: torch.Tensor, position: int,
             caches: list[KV] | None, prefix: Prefix | None = None) -> tuple[torch.Tensor, list[KV]]:
        """One step for a batch of sessions: symbol [b], state [b, dim], count [b] -> logits [b, outputs]."""
        x = self.embed(symbol[:, None], state[:, None], count[:, None])
        positions = torch.tensor([position], device=x.device)
        keys = position + 1
        new_caches = []
        for i, block in enumerate(self.blocks):
            mask = None if prefix is None else prefix.step_mask(i, keys)
            x, cache = block(x, positions, mask, None if prefix is None else prefix.kv[i],
                             None if caches is None else caches[i])
            new_caches.append(cache)
        return self.head(self.norm(x))[:, 0], new_caches


class SpeechDecoder(nn.Module):
    """Everything the decoder weights file holds; stateless between calls (state lives in DecoderState)."""

    def __init__(self, config: DecoderConfig, codebook: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoder = PhonemeEncoder(config)
        self.prefix = NARPrefix(config)
        self.decoder = ARDecoder(config)
        if codebook is not None:
            self.decoder.head.codebook.copy_(codebook)

    def make_prefix(self, hidden: torch.Tensor, lengths: torch.Tensor) -> Prefix:
        return Prefix(self.prefix(hidden, lengths), padding_mask(lengths, hidden.shape[1]), self.prefix.bias)

    def logits(self, ids: torch.Tensor, id_lengths: torch.Tensor, inputs: torch.Tensor, pointer: torch.Tensor,
               count: torch.Tensor, hidden: torch.Tensor | None = None,
               hidden_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits [b, t, outputs] of a padded batch (see `batch.collate`)."""
        encoded = self.encoder(ids, id_lengths)
        prefix = None if hidden is None else self.make_prefix(hidden, hidden_lengths)
        return self.decoder(inputs, pointer, count, encoded, prefix)
