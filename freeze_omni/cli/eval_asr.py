"""`freeze-omni eval asr`: WER/CER of speech input through the frozen LLM, a CTC head or a token readout."""

from __future__ import annotations

import argparse
from pathlib import Path

from freeze_omni.cli import add_leaf, non_negative_int
from freeze_omni.eval.report import add_report_arguments, emit


def run(args: argparse.Namespace) -> int:
    from freeze_omni.eval.asr import evaluate_asr, load_recognizer

    recognizer = load_recognizer(args.checkpoint, args.mode)
    result = evaluate_asr(args.manifest, recognizer, chunked=not args.full_context, limit=args.limit,
                          lead_ms=args.lead_ms)
    emit(result, args, f"ASR ({args.mode}, {'full context' if args.full_context else '160 ms chunks'})")
    return 0


def register(commands) -> None:
    sub = add_leaf(commands, "asr", "WER/CER of speech input through the frozen LLM (llm), the CTC head (ctc) "
                   "or a token readout alone (tokens)", run)
    sub.add_argument("--manifest", type=Path, required=True, metavar="M.jsonl")
    sub.add_argument("--mode", choices=("llm", "ctc", "tokens"), default="llm")
    sub.add_argument("--checkpoint", type=Path, required=True,
                     help="last.pt of `train encoder-llm` (llm, tokens) or `train encoder-ctc` (ctc)")
    sub.add_argument("--full-context", action="store_true", help="offline: no chunk mask")
    sub.add_argument("--limit", type=int, help="N utterances spread evenly over the manifest")
    sub.add_argument("--lead-ms", type=non_negative_int, default=0, metavar="MS",
                     help="silence before each file, as a live turn starts with its pre-roll (the engine's: 960 ms)")
    add_report_arguments(sub)
