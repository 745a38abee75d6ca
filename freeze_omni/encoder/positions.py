"""Sinusoidal positions computed for any index, so the encoder keeps working past 30 s.

Whisper's encoder stores 1500 positions (30 s at 50 frames/s), but they are exactly these
sinusoids (the converter checks the stored table against this formula), so we compute them for
any absolute frame index instead of storing a table: a stream of any length, and the same
vectors for a frame whether it is encoded by `step` or by `forward`.
"""

from __future__ import annotations

import math

import torch

MAX_TIMESCALE = 10000.0


def sinusoids(positions: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[n] absolute positions -> [n, dim] as Whisper lays them out: [sin | cos] over dim/2 timescales.

    Computed in float64: at index 10^5 float32 angles would already be off by ~1e-2.
    """
    half = dim // 2
    inv_timescales = torch.exp(-math.log(MAX_TIMESCALE) / (half - 1) * torch.arange(half, dtype=torch.float64))
    angles = positions.to(device=inv_timescales.device, dtype=torch.float64)[:, None] * inv_timescales[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).to(device=positions.device, dtype=dtype)
