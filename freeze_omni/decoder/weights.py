"""Decoder weights: fp16 safetensors with the config (and training record) as metadata."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from freeze_omni.decoder.model import DecoderConfig, SpeechDecoder
from freeze_omni.errors import ModelNotFoundError
from freeze_omni.paths import DEFAULT_MODEL_DIR

DEFAULT_DECODER_PATH = DEFAULT_MODEL_DIR / "decoder.safetensors"


def save_decoder(model: SpeechDecoder, path: str | Path, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    meta["config"] = json.dumps(asdict(model.config))
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def load_decoder(path: str | Path = DEFAULT_DECODER_PATH, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> SpeechDecoder:
    """The decoder in eval mode on `device` in `dtype` (weights are stored in fp16)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"decoder weights not found: {path} (train them: freeze-omni train decoder-tts)")
    with safe_open(str(path), framework="pt") as f:
        config = DecoderConfig(**json.loads(f.metadata()["config"]))
        state = {k: f.get_tensor(k) for k in f.keys()}
    model = SpeechDecoder(config)
    model.load_state_dict(state)
    return model.to(device=device, dtype=dtype).eval()

