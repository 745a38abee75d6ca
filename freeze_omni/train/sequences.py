"""Pack [template prefix | speech embeddings | template suffix | target tokens] rows for the frozen LLM.

Pure tensor code shared by the stages that put speech into the LLM (ASR in stage 2, spoken
questions in stage 3): rows of different speech lengths are right-padded, and only the target
tokens carry labels.
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


def pack_rows(prefix: torch.Tensor, speech: Sequence[torch.Tensor], suffix: torch.Tensor,
              targets: Sequence[torch.Tensor], embed) -> PackedRows:
    """prefix [p, h], speech rows [s_i, h], suffix [q, h], target ids [n_i] -> padded rows.

    Position j's label is the token at j + 1, so the last suffix position predicts the first
    target token and the last target position predicts nothing.
    """
    rows, labels = [], []
    for row_speech, target in zip(speech, targets):
        target_embeds = embed(target[None])[0].to(prefix.dtype)
        row = torch.cat([prefix, row_speech.to(prefix.dtype), suffix, target_embeds])
        label = torch.full((row.shape[0],), IGNORE, dtype=torch.long)
        start = prefix.shape[0] + row_speech.shape[0] + suffix.shape[0]
        label[start - 1: start - 1 + target.numel()] = target
        rows.append(row)
        labels.append(label)
    length = max(r.shape[0] for r in rows)
    hidden = prefix.shape[-1]
    embeds = prefix.new_zeros(len(rows), length, hidden)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    label_batch = torch.full((len(rows), length), IGNORE, dtype=torch.long)
    for i, (row, label) in enumerate(zip(rows, labels)):
        embeds[i, : row.shape[0]] = row
        mask[i, : row.shape[0]] = 1
        label_batch[i, : row.shape[0]] = label
    return PackedRows(embeds, mask, label_batch)


def next_token_loss(hidden: torch.Tensor, labels: torch.Tensor, lm_head) -> tuple[torch.Tensor, float]:
    """Cross-entropy on labelled positions only (the vocabulary projection of every position would
    cost more than the rest of the step). Returns the loss and the token accuracy."""
    positions = labels != IGNORE
    logits = lm_head(hidden[positions]).float()
    targets = labels[positions].to(logits.device)
    loss = torch.nn.functional.cross_entropy(logits, targets)
    accuracy = (logits.argmax(-1) == targets).float().mean().item()
    return loss, accuracy
