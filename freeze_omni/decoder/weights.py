"""Decoder weights: fp16 safetensors with the config (and training record) as metadata."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from freeze_omni.decoder.model import DecoderConfig, SpeechDecoder
from freeze_omni.errors import ModelNotFoundError
from freeze_omni.paths import DEFAULT_MODEL_DIR
from freeze_omni.safetensors_io import save_fp16

DEFAULT_DECODER_PATH = DEFAULT_MODEL_DIR / "decoder.safetensors"


def save_decoder(model: SpeechDecoder, path: str | Path, metadata: dict | None = None) -> Path:
    return save_fp16(path, model.state_dict(), {**(metadata or {}), "config": asdict(model.config)})


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

