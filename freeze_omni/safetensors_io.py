"""Writing shipped weights: fp16 safetensors, written atomically and readable by everyone.

Every part of a model (encoder, adapter, state head, codec, decoder) is written the same way:
floating tensors in fp16 (the shipped size), other tensors as they are, metadata values as
strings (JSON unless already a string). safetensors creates files with mode 0600; weights are
meant to be shared, so they get 0644. A temporary file and a rename keep a crash from leaving a
half-written file in the model folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save

from freeze_omni.paths import write_atomic


def save_fp16(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> Path:
    path = Path(path)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    state = {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous() for k, v in tensors.items()}
    write_atomic(path, save(state, metadata=meta or None))
    return path
