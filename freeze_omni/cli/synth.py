"""`freeze-omni data synth`: speak text lists with several TTS voices into a 16 kHz corpus.

Only argument parsing lives here; `--help` and `--list-voices` never load a TTS engine.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from freeze_omni.cli import add_leaf

DESCRIPTION = """Build a speech corpus: WAVs (16 kHz mono PCM16) and one JSONL manifest per split
(train.jsonl, dev.jsonl, test.jsonl) in --out. Voices: Piper (joe), espeak-ng variants and Kokoro
style packs; held-out voices and a held-out 10% of sentences never reach train. Re-running the
same command resumes: finished utterances are kept, only missing ones are synthesized."""


def register(commands) -> None:
    parser = add_leaf(commands, "synth", "synthesize a TTS speech corpus with JSONL manifests", run)
    parser.description = DESCRIPTION
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="corpus folder (default: $FREEZE_OMNI_DATA/corpus/default)")
    parser.add_argument("--hours", type=float, default=11.0, metavar="H",
                        help="target hours of audio over all splits (default: 11)")
    parser.add_argument("--texts", type=Path, nargs="+", metavar="FILE",
                        help="plain text files, one sentence a line, instead of the default text mix")
    parser.add_argument("--voices", nargs="+", metavar="VOICE",
                        help="voice ids or engines (piper, espeak, kokoro); default: all (see --list-voices)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="parallel worker processes (default: number of CPUs)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N utterances of the plan")
    parser.add_argument("--only-splits", nargs="+", default=(), metavar="SPLIT",
                        help="synthesize only these splits (train, dev, test), e.g. an evaluation machine's "
                             "test split; the utterances are those of the full build")
    parser.add_argument("--list-voices", action="store_true", help="print the voice catalogue and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from freeze_omni.data.synth import BuildConfig, build_corpus, default_corpus_dir
    from freeze_omni.data.voices import VOICES

    if args.list_voices:
        for voice in VOICES:
            print(f"{voice.id}\t{voice.engine}\t{'held-out (test only)' if voice.held_out else 'training'}")
        return 0
    config = BuildConfig(
        out_dir=args.out or default_corpus_dir(),
        hours=args.hours,
        text_files=tuple(args.texts or ()),
        voices=tuple(args.voices or ()),
        jobs=args.jobs,
        seed=args.seed,
        limit=args.limit,
        only_splits=tuple(args.only_splits),
    )
    result = build_corpus(config, progress=not args.quiet)
    summary = result.summary
    splits = ", ".join(f"{name} {s['hours']:.2f} h / {s['utterances']} utt" for name, s in summary["splits"].items())
    print(f"{config.out_dir}: {summary['utterances']} utterances, {summary['hours']:.2f} h "
          f"({splits}), {summary['distinct_texts']} distinct texts; {result.synthesized} new, "
          f"{result.reused} reused, {len(result.failed)} failed, {result.seconds:.0f} s")
    return 0
