"""`freeze-omni bench llm`: prefill time per speech chunk and decode speed of the frozen LLM."""

from __future__ import annotations

import argparse
import sys
import time

from freeze_omni.cli import add_leaf
from freeze_omni.eval.report import add_report_arguments, emit

DTYPES = ("bfloat16", "float16", "float32")


def run(args: argparse.Namespace) -> int:
    import torch

    from freeze_omni.llm import FrozenLLM
    from freeze_omni.llm.speed import measure_llm_speed

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    llm = FrozenLLM.load(args.model, dtype=getattr(torch, args.dtype), device=args.device)
    if args.int8:
        llm.quantize_int8()
    load_ms = (time.perf_counter() - start) * 1000
    print(f"loaded {llm.name} in {load_ms:.0f} ms; measuring", file=sys.stderr)
    speed = measure_llm_speed(llm, context=args.context, chunk_positions=args.chunk_positions,
                              repeats=args.repeats)
    result = {**speed.as_dict(), "model": llm.name, "threads": torch.get_num_threads(),
              "dtype": args.dtype, "int8_weights": args.int8, "device": args.device, "load_ms": load_ms}
    emit(result, args, "Frozen LLM speed")
    return 0


def register(commands) -> None:
    bench = add_leaf(commands, "llm", "prefill ms per 160 ms chunk and decode tokens/s of the frozen LLM", run)
    bench.add_argument("--model", help="HF model directory or .gguf file (default: SmolLM2-135M-Instruct)")
    bench.add_argument("--dtype", choices=DTYPES, default="bfloat16")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--int8", action="store_true", help="weight-only int8 matmuls (model.json llm_weights)")
    bench.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    bench.add_argument("--context", type=int, default=300, help="positions already in the cache")
    bench.add_argument("--chunk-positions", type=int, default=8, help="embedding positions per prefill")
    bench.add_argument("--repeats", type=int, default=20)
    add_report_arguments(bench)
