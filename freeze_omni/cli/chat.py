"""`freeze-omni chat INPUT.wav`: spoken dialogue on a recording (lands with the duplex issue)."""

from __future__ import annotations

import argparse
import sys

from freeze_omni.cli import add_leaf
from freeze_omni.paths import DEFAULT_MODEL_DIR

# The trained parts of the default model, in the order a turn uses them.
DEFAULT_MODEL_PARTS = {
    "encoder.safetensors": "streaming speech encoder (issue #8)",
    "adapter.safetensors": "adapter into the LLM (issue #8)",
    "state_head.safetensors": "chunk-level state head (issue #5)",
    "decoder.safetensors": "NAR prefix + AR speech decoder (issue #9)",
    "codec.safetensors": "single-codebook codec (issue #9)",
}


def missing_parts() -> list[str]:
    return [f"{name}: {what}" for name, what in DEFAULT_MODEL_PARTS.items()
            if not (DEFAULT_MODEL_DIR / name).is_file()]


def run(args: argparse.Namespace) -> int:
    from freeze_omni.audio.io import read_audio

    read_audio(args.input)  # bad input is reported before anything else
    missing = missing_parts()
    if missing:
        print(f"{args.prog}: the default model is not complete yet; missing in {DEFAULT_MODEL_DIR}:",
              file=sys.stderr)
        for line in missing:
            print(f"  - {line}", file=sys.stderr)
        return 2
    print(f"{args.prog}: the turn engine lands with issue #5", file=sys.stderr)
    return 2


def register(commands) -> None:
    chat = add_leaf(commands, "chat", "talk to the model with a recording: it listens, decides, answers in speech", run)
    chat.add_argument("input", help="WAV/FLAC recording of the user (any rate)")
    chat.add_argument("-o", "--output", help="where to write the spoken answer(s)")
    chat.add_argument("--json", action="store_true", help="print one JSON object with every turn")
    chat.add_argument("--realtime", action="store_true", help="pace input like a live microphone")
