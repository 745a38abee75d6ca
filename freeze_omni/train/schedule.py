"""Learning-rate schedule: linear warm-up, then cosine decay to a floor (as in nanoGPT)."""

import math


def learning_rate(step: int, peak: float, floor: float, warmup: int, total: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    if step >= total:
        return floor
    progress = (step - warmup) / max(1, total - warmup)
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - floor)
