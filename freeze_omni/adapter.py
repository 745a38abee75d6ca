"""Adapter: encoder frames -> LLM input embeddings at about 12.5 per second.

A stack of causal stride-2 convolutions (one per halving: Whisper's 50 frames/s need two, the
from-scratch encoder's 25 frames/s one) followed by a linear map to the LLM's hidden size, which
always comes from the backbone's config. With `output_norm`, each embedding is RMS-normalised and
scaled by a learnt gain that starts at the RMS of the LLM's own token embeddings: the frozen LLM
then reads speech at the magnitude its embeddings have from the first step, instead of frames
several times larger that dominate its residual stream.

With `vocabulary` > 0 the linear map is replaced by a token readout (`TokenReadout`): a CTC layer
over that many of the LLM's own tokens plus a blank, whose posteriors weight the LLM's input
embeddings of those tokens. The LLM then reads what it reads for typed text (a token's own
embedding where the token was heard, a learnt blank vector between tokens), which a copy prompt
trained on text alone already makes it repeat; speech mapped to free vectors by the next-token
loss alone did not get there on this CPU's budget. A token's posterior often stays high for two
or three frames, and the LLM copied each of them ("the the"), so a frame counts only the rise of a
token's probability over the frame before (the chance the token starts there); the rest goes to
the blank. That needs the last frame's posteriors, carried in `AdapterCache`. A stream's first
frame has nothing before it: it holds the readout's prior over first words ("What" 0.17, "The" 0.07
whatever is said), so it is measured against itself and reads as blank. A session's turn starts with
its pre-roll, so nothing is spoken in that frame. Only the
`READ_TOKENS` largest rises of a frame are read (the rest goes to the blank too): they hold nearly
all of it, and the product over every row of the vocabulary was most of the readout's time.

Output t of a convolution reads inputs 2t - k + 2 .. 2t + 1, so it is complete as soon as the
second frame of its pair arrives: a 160 ms encoder chunk gives exactly two embeddings with nothing
held back. `step` carries the input frames later windows still need (`AdapterCache`) and equals
`forward` for any split.
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
READ_TOKENS = 8  # token rises a readout frame reads; the rest of its weight goes to the blank


@dataclass(frozen=True)
class AdapterConfig:
    input_dim: int  # encoder width
    output_dim: int  # the LLM's hidden size
    layers: int = 1  # stride-2 convolutions: the rate drops by 2 ** layers
    kernel_size: int = 5
    output_norm: bool = False  # RMS-normalise the output (see the module docstring)
    vocabulary: int = 0  # > 0: a token readout over this many LLM tokens instead of the linear map

    @classmethod
    def for_encoder(cls, encoder: EncoderConfig, llm_hidden_size: int, output_norm: bool = False,
                    vocabulary: int = 0) -> "AdapterConfig":
        """Enough halvings to bring the encoder's frame rate down to `LLM_RATE`."""
        ratio = FEATURE_RATE / encoder.subsampling / LLM_RATE
        layers = round(ratio).bit_length() - 1
        if 2 ** layers != ratio:
            raise ValueError(f"encoder rate {FEATURE_RATE / encoder.subsampling} Hz is not a power-of-two multiple of {LLM_RATE} Hz")
        return cls(input_dim=encoder.dim, output_dim=llm_hidden_size, layers=layers, output_norm=output_norm,
                   vocabulary=vocabulary)


@dataclass
class AdapterCache:
    """Per convolution, the input frames ([b, channels, frames]) that its next windows still need,
    and a token readout's posteriors of the last frame ([b, vocabulary + 1]; None before any)."""

    carries: list[torch.Tensor]
    last_probs: torch.Tensor | None = None


@dataclass
class AdapterOutput:
    embeds: torch.Tensor  # [b, t, output_dim]
    lengths: torch.Tensor  # [b]
    log_probs: torch.Tensor | None = None  # [b, t, vocabulary + 1], blank first: the token readout's CTC output


class TokenReadout(nn.Module):
    """Frames -> CTC posteriors over `token_ids` (LLM ids) and a blank -> the LLM's embeddings of them.

    `token_ids` is part of the weights; the embedding rows are the frozen LLM's and are attached at
    load time (`attach`), never saved, and gathered again whenever `token_ids` is loaded or set.
    """

    def __init__(self, input_dim: int, output_dim: int, vocabulary: int) -> None:
        super().__init__()
        self.logits = nn.Linear(input_dim, vocabulary + 1)
        self.blank = nn.Parameter(torch.zeros(output_dim))
        self.register_buffer("token_ids", torch.zeros(vocabulary, dtype=torch.long))
        self.register_buffer("rows", torch.zeros(vocabulary, output_dim), persistent=False)
        self.table: torch.Tensor | None = None  # the LLM's, not this module's: neither saved nor moved
        self.register_load_state_dict_post_hook(lambda module, _: module._gather())

    def set_vocabulary(self, token_ids: list[int]) -> None:
        if len(token_ids) != self.token_ids.numel():
            raise ValueError(f"{len(token_ids)} token ids for a readout over {self.token_ids.numel()}")
        ids = torch.tensor(token_ids)
        self._check(ids)
        self.token_ids.copy_(ids)
        self._gather()

    def attach(self, embedding: torch.Tensor) -> None:
        """Read the rows of `token_ids` from the LLM's input embedding table [llm_vocab, output_dim]."""
        if embedding.shape[1] != self.rows.shape[1]:
            raise ValueError(f"embedding width {embedding.shape[1]}, readout width {self.rows.shape[1]}")
        self.table = embedding.detach()
        self._gather()

    def _check(self, token_ids: torch.Tensor) -> None:
        limit = self.table.shape[0] if self.table is not None else None
        if int(token_ids.min()) < 0 or (limit is not None and int(token_ids.max()) >= limit):
            raise ValueError(f"token ids must lie in [0, {limit or 'vocabulary'}) (the LLM's vocabulary)")

    def _gather(self) -> None:
        if self.table is None:
            return
        self._check(self.token_ids)
        self.rows = self.table[self.token_ids.to(self.table.device)].float().to(self.rows.device)

    def forward(self, x: torch.Tensor, last_probs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """[b, t, input_dim] and the posteriors of the frame before ([b, vocabulary + 1], None at the
        start) -> embeddings [b, t, output_dim] and log-posteriors [b, t, vocabulary + 1]."""
        if self.table is None:
            raise RuntimeError("token readout has no LLM embeddings: call attach() with the LLM's table first")
        log_probs = self.logits(x).float().log_softmax(-1)
        probs = log_probs.exp()
        before = probs[:, :1] if last_probs is None else last_probs[:, None]
        rises = (probs - torch.cat([before, probs[:, :-1]], 1))[..., 1:].clamp_min(0)
        starts, tokens = rises.topk(min(READ_TOKENS, rises.shape[-1]), -1)
        embeds = (starts.unsqueeze(-1) * self.rows[tokens]).sum(-2)
        return embeds + (1 - starts.sum(-1, keepdim=True)) * self.blank, log_probs

    def greedy_ids(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """[b, t, vocabulary + 1] -> the LLM ids of each row's best path (repeats merged, blanks dropped;
        the first frame is a blank, as `forward` reads it)."""
        rows = []
        for path, n in zip(log_probs.argmax(-1).tolist(), lengths.tolist()):
            path = [0] + path[1:n] if n else []
            rows.append([int(self.token_ids[c - 1]) for i, c in enumerate(path) if c and (i == 0 or c != path[i - 1])])
        return rows


class Adapter(nn.Module):
    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.convs = nn.ModuleList(
            CausalConv1d(config.input_dim, config.input_dim, config.kernel_size, stride=2, left_pad=config.kernel_size - 2)
            for _ in range(config.layers))
        if config.vocabulary and config.output_norm:
            raise ValueError("a token readout emits the LLM's own embeddings: it takes no output norm")
        self.readout = (TokenReadout(config.input_dim, config.output_dim, config.vocabulary)
                        if config.vocabulary else None)
        self.proj = None if config.vocabulary else nn.Linear(config.input_dim, config.output_dim)
        self.norm = nn.RMSNorm(config.output_dim) if config.output_norm else None

    def match_embedding_scale(self, embedding: torch.Tensor) -> None:
        """Start the output gain at the RMS of `embedding` [vocab, output_dim] (the LLM's table)."""
        if self.norm is None:
            raise ValueError("this adapter has no output norm to scale")
        with torch.no_grad():
            self.norm.weight.fill_(float(embedding.float().pow(2).mean().sqrt()))

    def _project(self, x: torch.Tensor,
                 last_probs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[b, input_dim, t] convolution output -> [b, t, output_dim] embeddings (and the readout's
        log-posteriors, given the frame before's posteriors)."""
        x = x.transpose(1, 2)
        if self.readout is not None:
            return self.readout(x, last_probs)
        out = self.proj(x)
        return (self.norm(out) if self.norm is not None else out), None

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> AdapterOutput:
        """frames [b, t, input_dim] (padded), lengths [b] -> embeddings [b, t / 2 ** layers, output_dim]."""
        x = frames.transpose(1, 2)
        for conv in self.convs:
            x = F.gelu(conv.causal(x))
            lengths = lengths // 2
        embeds, log_probs = self._project(x)
        return AdapterOutput(embeds, lengths, log_probs)

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
        embeds, log_probs = self._project(x, cache.last_probs)
        last_probs = log_probs[:, -1].exp() if log_probs is not None and log_probs.shape[1] else cache.last_probs
        return embeds, AdapterCache(carries, last_probs)
