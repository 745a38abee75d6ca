"""`freeze-omni eval reference-asr`: how intelligible a set of recordings is to an independent ASR."""

from __future__ import annotations

import argparse
from pathlib import Path

from freeze_omni.cli import add_leaf, positive_int
from freeze_omni.eval.report import add_report_arguments, emit


def register(commands) -> None:
    sub = add_leaf(
        commands,
        "reference-asr",
        "WER/CER of a speech manifest under the reference ASR (Whisper tiny.en): its source WER",
        run,
    )
    sub.add_argument("--manifest", type=Path, required=True, metavar="M.jsonl",
                     help='JSONL, one {"audio": path, "text": reference} a line')
    sub.add_argument("--limit", type=positive_int, metavar="N", help="N utterances spread evenly over the manifest")
    sub.add_argument("--threads", type=positive_int, metavar="T", help="CPU threads (default: all)")
    add_report_arguments(sub)


def run(args: argparse.Namespace) -> int:
    # Imported here so that `freeze-omni --help` does not load the ASR stack.
    from freeze_omni.eval.intelligibility import evaluate_manifest

    result = evaluate_manifest(args.manifest, args.limit, args.threads)
    emit(result, args, f"Reference ASR on {args.manifest}")
    return 0
