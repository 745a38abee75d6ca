"""`freeze-omni bench serve`: simulated users on loopback against a live server (see serving/loadtest.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from freeze_omni.cli import add_draft_threshold, add_leaf
from freeze_omni.eval.report import add_report_arguments, emit
from freeze_omni.paths import DEFAULT_MODEL_DIR


def run(args: argparse.Namespace) -> int:
    from freeze_omni.bundle import missing_parts

    if args.users < 1 or args.replicas < 1:
        print(f"{args.prog}: --users and --replicas must be >= 1", file=sys.stderr)
        return 2
    if missing := missing_parts(args.model):
        print(f"{args.prog}: the model in {args.model} is not complete yet; missing: " + "; ".join(missing),
              file=sys.stderr)
        return 2
    import torch

    from freeze_omni.serving import load_replicas
    from freeze_omni.serving.loadtest import levels, reference_answer, run_alone, run_level, spoken_questions

    torch.set_num_threads(args.threads)
    replicas = load_replicas(args.model, args.replicas, args.temperature, args.draft_threshold)
    questions = spoken_questions()
    engine = replicas[0].engine
    print(f"offline references for {args.users} users", file=sys.stderr)
    references = [reference_answer(engine, questions[i % len(questions)], i, args.tail) for i in range(args.users)]
    results = []
    for users in ([args.users] if args.no_sweep else levels(args.users)):
        if users == 1:  # every question of the top level, each alone: what the top level is compared with
            level = asyncio.run(run_alone(replicas, questions, references, args.users, args.tail))
        else:
            level = asyncio.run(run_level(replicas, questions, references, users, args.tail))
        print(f"{users} users: chunk p95 {level.chunk_latency_ms['p95']:.1f} ms, first packet p50 "
              f"{_ms(level.first_packet_ms['p50'])}, answered {level.answered}/{level.expected_answers}, "
              f"cross-talk {level.cross_talk}",
              file=sys.stderr)
        results.append(level)
    top, single = results[-1], results[0]
    held = [level.users for level in results if level.realtime]
    ratio = (top.first_packet_ms["p50"] / single.first_packet_ms["p50"]
             if top.first_packet_ms["p50"] and single.first_packet_ms["p50"] and single.users == 1 else None)
    result = {"users": args.users, "replicas": args.replicas, "chunk_latency_ms": top.chunk_latency_ms,
              "first_packet_ms": top.first_packet_ms, "cross_talk": top.cross_talk, "answered": top.answered,
              "expected_answers": top.expected_answers,
              "max_realtime_users": max(held, default=0), "first_packet_vs_single_user": ratio,
              "speech_out": engine.speaker.__class__.__name__ != "TextOnlySpeaker",
              "model": str(args.model), "threads": args.threads, "errors": top.errors,
              "draft_threshold": engine.config.draft_threshold,
              "levels": [level.as_dict() for level in results]}
    emit(result, args, "Model server under load")
    return 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def register(commands) -> None:
    bench = add_leaf(commands, "serve", "concurrent users held in real time by the server", run)
    bench.add_argument("--users", type=int, default=4, help="simulated users talking at once")
    bench.add_argument("--replicas", type=int, default=1)
    bench.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model folder (default: the shipped model)")
    bench.add_argument("--threads", type=int, default=1, help="torch threads (each replica runs in its own thread)")
    bench.add_argument("--tail", type=float, default=6.0, help="seconds of silence a user waits for its answer")
    bench.add_argument("--no-sweep", action="store_true",
                       help="only run --users (default: also 1, 2, 4, ... users, for max_realtime_users; "
                            "the 1-user level asks each of the --users questions alone in turn)")
    bench.add_argument("--temperature", type=float, default=0.0,
                       help="answer sampling temperature (0: greedy); user i samples with seed i")
    add_draft_threshold(bench)
    add_report_arguments(bench)
