"""Pad aligned sentences into one teacher-forcing batch (pure tensor code)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from freeze_omni.decoder.alignment import Aligned

IGNORE = -100


def _pad(rows: Sequence[np.ndarray], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.from_numpy(np.asarray(row, np.int64))
    return out


def collate(ids: Sequence[np.ndarray], aligned: Sequence[Aligned]) -> dict[str, torch.Tensor]:
    """Phoneme ids and aligned rows of b sentences -> padded tensors; padded targets are IGNORE.
    Padded steps read pointer 0 and symbol 0: causal attention keeps them out of real steps."""
    return {
        "ids": _pad(ids, 0),
        "id_lengths": torch.tensor([len(r) for r in ids]),
        "inputs": _pad([a.inputs for a in aligned], 0),
        "pointer": _pad([a.pointer for a in aligned], 0),
        "count": _pad([a.count for a in aligned], 0),
        "targets": _pad([a.targets for a in aligned], IGNORE),
    }


def pad_hidden(hidden: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """LLM hidden states [L_i, h] -> ([b, L, h], lengths [b])."""
    width = max(h.shape[0] for h in hidden)
    out = torch.zeros(len(hidden), width, hidden[0].shape[1], dtype=hidden[0].dtype)
    for i, h in enumerate(hidden):
        out[i, : h.shape[0]] = h
    return out, torch.tensor([h.shape[0] for h in hidden])
