"""Training configuration: one TOML file per stage, loaded into dataclasses.

`[train]` holds what every stage shares (optimiser, schedule, checkpoints, budget); `[stage]`
holds the stage's own settings and is handed to it as a plain dict it validates itself.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from freeze_omni.errors import FreezeOmniError


class StageSettings:
    """Base of every stage's `[stage]` dataclass: refuse unknown keys instead of ignoring a typo."""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]):
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise FreezeOmniError(f"unknown [stage] settings for {cls.__name__}: {', '.join(unknown)}")
        return cls(**raw)


@dataclass
class TrainConfig:
    out_dir: str = ""         # "" = $FREEZE_OMNI_DATA/runs/<stage>
    max_steps: int = 1000
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-5
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    log_every: int = 10
    eval_every: int = 200
    checkpoint_every: int = 100
    max_minutes: float = 0.0  # stop (with a checkpoint) after this much wall time; 0 = no limit
    seed: int = 0
    threads: int = 0          # torch threads per process; 0 = torch's choice
    stage: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "TrainConfig":
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise FreezeOmniError(f"{path}: no such config file") from None
        except tomllib.TOMLDecodeError as err:
            raise FreezeOmniError(f"{path}: not valid TOML ({err})") from None
        return cls.from_dict({**raw.get("train", {}), **(overrides or {})}, raw.get("stage", {}), str(path))

    @classmethod
    def from_dict(cls, train: dict[str, Any], stage: dict[str, Any] | None = None, where: str = "config") -> "TrainConfig":
        known = {f.name for f in fields(cls)} - {"stage"}
        unknown = sorted(set(train) - known)
        if unknown:
            raise FreezeOmniError(f"{where}: unknown [train] settings {', '.join(unknown)}")
        return cls(**train, stage=dict(stage or {}))
