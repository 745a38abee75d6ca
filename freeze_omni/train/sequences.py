"""Rows of LLM input built from template ids, trainable embeddings and speech, with their labels.

Pure tensor code shared by the stages that put speech into the LLM (ASR in stage 2, spoken
dialogue in stage 3). A row is built part by part; rows of different lengths are right-padded.
Two kinds of labels ride along: the next token to predict (only on tokens being learnt) and a
dialogue state (only at the positions where the state head decides).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

IGNORE = -100


@dataclass
class PackedRows:
    embeds: torch.Tensor          # [b, t, hidden]
    attention_mask: torch.Tensor  # [b, t] 1 = real
    labels: torch.Tensor          # [b, t] next token to predict at each position, IGNORE elsewhere
    states: torch.Tensor          # [b, t] dialogue state to predict at each position, IGNORE elsewhere


class RowBuilder:
    """One row, appended in order: embeddings (optionally with state labels) and token ids."""

    def __init__(self) -> None:
        self.parts: list[torch.Tensor] = []
        self.labels: list[int] = []
        self.states: list[int] = []

    def __len__(self) -> int:
        return len(self.labels)

    def add_embeds(self, embeds: torch.Tensor, states: Sequence[int] | None = None) -> None:
        """embeds [n, hidden]; `states` gives a label (or IGNORE) for each of the n positions."""
        if states is not None and len(states) != embeds.shape[0]:
            raise ValueError(f"{len(states)} state labels for {embeds.shape[0]} positions")
        self.parts.append(embeds)
        self.labels += [IGNORE] * embeds.shape[0]
        self.states += list(states) if states is not None else [IGNORE] * embeds.shape[0]

    def add_tokens(self, ids: torch.Tensor, embed, learn: bool = False) -> None:
        """ids [n] through the LLM's embedding table; with `learn`, the position before each token
        is labelled with it (so the last position already in the row predicts the first token)."""
        if learn and not self.labels:
            raise ValueError("a learnt token needs a position before it")
        start = len(self)
        self.add_embeds(embed(ids[None])[0])
        if learn:
            self.labels[start - 1: start - 1 + ids.numel()] = ids.tolist()


def pad_rows(rows: Sequence[RowBuilder], dtype: torch.dtype) -> PackedRows:
    length = max(len(r) for r in rows)
    hidden = rows[0].parts[0].shape[-1]
    embeds = torch.zeros(len(rows), length, hidden, dtype=dtype, device=rows[0].parts[0].device)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)
    states = torch.full((len(rows), length), IGNORE, dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row)
        embeds[i, :n] = torch.cat([p.to(dtype) for p in row.parts])
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(row.labels)
        states[i, :n] = torch.tensor(row.states)
    return PackedRows(embeds, mask, labels, states)


def pack_rows(prefix: torch.Tensor, speech: Sequence[torch.Tensor], suffix: torch.Tensor,
              targets: Sequence[torch.Tensor], embed) -> PackedRows:
    """[prefix | speech_i | suffix | target_i] rows, labels on the targets only (stage 2)."""
    rows = []
    for row_speech, target in zip(speech, targets):
        row = RowBuilder()
        row.add_embeds(prefix)
        row.add_embeds(row_speech)
        row.add_embeds(suffix)
        row.add_tokens(target, embed, learn=True)
        rows.append(row)
    return pad_rows(rows, prefix.dtype)


def next_token_loss(hidden: torch.Tensor, labels: torch.Tensor, lm_head) -> tuple[torch.Tensor, float]:
    """Cross-entropy on labelled positions only (the vocabulary projection of every position would
    cost more than the rest of the step). Returns the loss and the token accuracy."""
    positions = labels != IGNORE
    logits = lm_head(hidden[positions]).float()
    targets = labels[positions].to(logits.device)
    loss = torch.nn.functional.cross_entropy(logits, targets)
    accuracy = (logits.argmax(-1) == targets).float().mean().item()
    return loss, accuracy
