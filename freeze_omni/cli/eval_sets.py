"""`freeze-omni data eval-sets`: the unseen-synthesizer and human-speech sets issue #8 measures on.

Only argument parsing lives here; `--help` never looks for flite or the recordings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from freeze_omni.cli import add_leaf, positive_int

DESCRIPTION = """Write evaluation sets (16 kHz mono WAVs + JSONL manifests for `eval asr` and
`eval reference-asr`) into --out: unseen-synth-clean.jsonl (CMU Flite, a synthesizer no training
stage uses, speaking held-out test sentences of the default corpus), unseen-synth-10db.jsonl (the
same audio with white or pink noise at exactly 10 dB SNR on the active speech) and human.jsonl
(real recordings with shipped transcripts from the Debian package pocketsphinx-testdata; for
evaluation only). Needs the Debian packages flite and pocketsphinx-testdata (`make` installs them)."""


def register(commands) -> None:
    parser = add_leaf(commands, "eval-sets", "build the unseen-synthesizer and human-speech evaluation sets", run)
    parser.description = DESCRIPTION
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="output folder (default: $FREEZE_OMNI_DATA/eval-sets)")
    parser.add_argument("--limit", type=positive_int, default=100, metavar="N",
                        help="test sentences the unseen synthesizer speaks (default: 100)")
    parser.add_argument("--snr", type=float, default=10.0, metavar="DB",
                        help="SNR of the noisy copy in dB (default: 10)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="which sentences and noise (default: 0)")
    parser.add_argument("--no-human", action="store_true", help="skip the human-speech set")


def run(args: argparse.Namespace) -> int:
    from freeze_omni.data.eval_sets import EvalSetsConfig, build_eval_sets, default_eval_dir

    config = EvalSetsConfig(out_dir=args.out or default_eval_dir(), limit=args.limit, snr_db=args.snr,
                            seed=args.seed, human=not args.no_human)
    summary = build_eval_sets(config)
    for name, info in summary["sets"].items():
        print(f"{config.out_dir / info['manifest']}: {info['utterances']} utterances, {info['seconds']:.1f} s")
    return 0
