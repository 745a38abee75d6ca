"""The quiet between and after words, as a microphone gives it: a faint noise floor.

A microphone never gives digital zeros, and the models heard the floor in training (stage 3's
turns, the state-head replays); after exact zeros the shipped model sometimes never answered. So
every place that pads a recording with quiet (the replay behind `chat`, the client's tail,
`bench serve`) pads with this.
"""

from __future__ import annotations

import numpy as np

QUIET_DBFS = -65.0  # a quiet room: inside the range training lays under its turns (-75..-50 dBFS)


def noise_floor(length: int, level_dbfs: float = QUIET_DBFS, rng: np.random.Generator | None = None) -> np.ndarray:
    """`length` samples of white noise at `level_dbfs` RMS; without `rng`, the same samples every
    call (seed 0), so a client's tail and an offline reference of it agree."""
    rng = np.random.default_rng(0) if rng is None else rng
    return (10 ** (level_dbfs / 20) * rng.standard_normal(length)).astype(np.float32)
