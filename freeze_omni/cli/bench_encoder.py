"""`freeze-omni bench encoder`: time of one 160 ms streaming step through encoder + adapter."""

from __future__ import annotations

import argparse
import json
import sys
import time

from freeze_omni.cli import add_leaf, non_negative_int
from freeze_omni.encoder.masks import UNLIMITED
from freeze_omni.eval.report import add_report_arguments, emit


def llm_hidden_size(source: str | None) -> int:
    """The width the adapter must produce, read from the backbone's config (default: the shipped LLM)."""
    from freeze_omni.llm.loading import resolve_model_dir

    return int(json.loads((resolve_model_dir(source) / "config.json").read_text())["hidden_size"])


def run(args: argparse.Namespace) -> int:
    import torch

    from freeze_omni.adapter import Adapter, AdapterConfig
    from freeze_omni.encoder import SCRATCH, SpeechEncoder
    from freeze_omni.encoder.speed import measure_encoder_speed
    from freeze_omni.encoder.whisper import load_whisper_encoder

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    encoder = load_whisper_encoder() if args.encoder == "whisper" else SpeechEncoder(SCRATCH).eval()
    hidden = args.llm_hidden_size or llm_hidden_size(args.llm)
    adapter = Adapter(AdapterConfig.for_encoder(encoder.config, hidden, vocabulary=args.vocabulary)).eval()
    if adapter.readout is not None:  # stand-in LLM rows: the time does not depend on their values
        adapter.readout.set_vocabulary(list(range(args.vocabulary)))
        adapter.readout.attach(torch.randn(args.vocabulary, hidden))
    load_ms = (time.perf_counter() - start) * 1000
    chunk_size = args.chunk_size or 16 // encoder.config.subsampling  # one 160 ms feature chunk
    print(f"loaded the {args.encoder} encoder in {load_ms:.0f} ms; measuring", file=sys.stderr)
    speed = measure_encoder_speed(encoder, adapter, chunk_size, args.left_chunks, context_s=args.context,
                                  repeats=args.repeats)
    result = {**speed.as_dict(), "encoder": args.encoder, "llm_hidden_size": hidden, "vocabulary": args.vocabulary,
              "threads": torch.get_num_threads(), "load_ms": load_ms}
    emit(result, args, "Encoder + adapter streaming speed")
    return 0


def register(commands) -> None:
    bench = add_leaf(commands, "encoder", "encoder + adapter step time per 160 ms chunk", run)
    bench.add_argument("--encoder", choices=("whisper", "scratch"), default="whisper",
                       help="Whisper tiny.en initialisation or the from-scratch design (random weights)")
    bench.add_argument("--llm", help="backbone whose hidden size the adapter targets (default: the shipped LLM)")
    bench.add_argument("--llm-hidden-size", type=int, help="skip reading the backbone's config")
    bench.add_argument("--vocabulary", type=non_negative_int, default=0,
                       help="adapter ending in a token readout over this many LLM tokens (0: a linear map)")
    bench.add_argument("--chunk-size", type=int, default=0,
                       help="attention chunk in encoder frames (default: one 160 ms chunk)")
    bench.add_argument("--left-chunks", type=int, default=16, help=f"left context in chunks ({UNLIMITED} = unlimited)")
    bench.add_argument("--context", type=float, default=10.0, help="seconds streamed before timing starts")
    bench.add_argument("--threads", type=int, default=1, help="torch threads")
    bench.add_argument("--repeats", type=int, default=50)
    add_report_arguments(bench)
