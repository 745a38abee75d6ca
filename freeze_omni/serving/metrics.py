"""Counters and latency figures of the server, rendered in the Prometheus text format.

Pure: the server records, `/metrics` renders, `bench serve` reads the same numbers in-process.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

LATENCY_BUCKETS_MS = (10, 20, 40, 80, 160, 320, 640, 1280, 2560)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS_MS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    total: float = 0.0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # for percentiles

    def observe(self, value: float) -> None:
        self.counts[next((i for i, b in enumerate(self.buckets) if value <= b), len(self.buckets))] += 1
        self.total += value
        self.recent.append(value)

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(np.fromiter(self.recent, float), q)) if self.recent else None

    def lines(self, name: str) -> list[str]:
        out, cumulative = [f"# TYPE {name} histogram"], 0
        for bound, count in zip(self.buckets, self.counts):
            cumulative += count
            out.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
        out.append(f'{name}_bucket{{le="+Inf"}} {sum(self.counts)}')
        out += [f"{name}_sum {self.total:.3f}", f"{name}_count {sum(self.counts)}"]
        return out


@dataclass
class Metrics:
    chunk_latency_ms: Histogram = field(default_factory=Histogram)  # input item (chunk or shorter) arrival -> handled
    items: Counter = field(default_factory=Counter)  # by kind
    item_errors: Counter = field(default_factory=Counter)  # by kind
    batches: Counter = field(default_factory=Counter)  # by size
    refused: Counter = field(default_factory=Counter)  # connections refused, by reason
    closed: Counter = field(default_factory=Counter)  # sessions ended, by reason
    answers: int = 0

    def render(self, users: int, max_users: int, replicas: int, busy_replicas: int, memory_bytes: int) -> str:
        lines = [
            "# TYPE freeze_omni_users gauge", f"freeze_omni_users {users}",
            "# TYPE freeze_omni_max_users gauge", f"freeze_omni_max_users {max_users}",
            "# TYPE freeze_omni_replicas gauge", f"freeze_omni_replicas {replicas}",
            "# TYPE freeze_omni_replicas_busy gauge", f"freeze_omni_replicas_busy {busy_replicas}",
            "# TYPE freeze_omni_session_cache_bytes gauge", f"freeze_omni_session_cache_bytes {memory_bytes}",
            "# TYPE freeze_omni_answers_total counter", f"freeze_omni_answers_total {self.answers}",
        ]
        lines += self.chunk_latency_ms.lines("freeze_omni_chunk_latency_ms")
        for name, counter, label in (("items", self.items, "kind"), ("item_errors", self.item_errors, "kind"),
                                     ("batches", self.batches, "size"), ("refused", self.refused, "reason"),
                                     ("sessions_closed", self.closed, "reason")):
            lines.append(f"# TYPE freeze_omni_{name}_total counter")
            lines += [f'freeze_omni_{name}_total{{{label}="{key}"}} {value}' for key, value in sorted(counter.items())]
        return "\n".join(lines) + "\n"
