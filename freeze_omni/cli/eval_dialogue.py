"""`freeze-omni eval spoken-qa`, `eval duplex` and `eval latency`: the dialogue model on held-out speech."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from freeze_omni.cli import add_draft_threshold, add_leaf, positive_int
from freeze_omni.eval.report import add_report_arguments, emit
from freeze_omni.paths import DEFAULT_MODEL_DIR

ANSWER_TOKENS = 48  # answer length limit of the dialogue evaluations


def load_engine(model_dir: Path, max_answer_tokens: int, speech: bool, **settings):
    """A greedy turn engine on the bundle; `speech=False` answers in text only; `settings` go
    over the model's own dialogue settings (None: left as they are)."""
    from freeze_omni.audio.vad import SpeechDetector
    from freeze_omni.bundle import load_model
    from freeze_omni.dialogue import TurnEngine

    model = load_model(model_dir, speech=speech)
    config = model.spec.dialogue_config(max_answer_tokens=max_answer_tokens, **settings)
    return TurnEngine(model.speech_input, model.llm, model.state_head, SpeechDetector(), model.speaker, config=config)


def run_spoken_qa(args: argparse.Namespace) -> int:
    from freeze_omni.eval.spoken_qa import corpus_qa_set, evaluate_spoken_qa, read_qa_set
    from freeze_omni.paths import data_dir

    qa_set = args.set
    if qa_set is None:
        corpus = data_dir() / "corpus" / "default"
        qa_set = corpus_qa_set(corpus / "test.jsonl", data_dir() / "eval" / "spoken_qa_test.jsonl", args.limit)
        print(f"QA set: quiz questions of {corpus}/test.jsonl -> {qa_set}", file=sys.stderr)
    items = read_qa_set(qa_set)[: args.limit]
    engine = load_engine(args.model, args.max_tokens, speech=False)
    result = evaluate_spoken_qa(engine, items, args.max_tokens, log=lambda m: print(m, file=sys.stderr))
    emit({**result, "qa_set": str(qa_set), "model": str(args.model)}, args, "Spoken QA vs typed QA")
    return 0


def run_duplex(args: argparse.Namespace) -> int:
    from freeze_omni.audio import SAMPLE_RATE
    from freeze_omni.eval.duplex import build_cases, evaluate_duplex, sweep_answer_threshold
    from freeze_omni.paths import data_dir
    from freeze_omni.train.turns import read_turn_utterances

    manifest = args.manifest or data_dir() / "corpus" / "default" / "test.jsonl"
    cases = build_cases(read_turn_utterances(manifest), args.requests, args.seed)
    engine = load_engine(args.model, args.max_tokens, speech=args.sweep is None,
                         answer_threshold=args.answer_threshold, ignore_threshold=args.ignore_threshold)
    if args.sweep is not None:
        thresholds = [float(t) for t in args.sweep.split(",")]
        ignore = [float(t) for t in args.ignore_sweep.split(",")] if args.ignore_sweep else None
        table = sweep_answer_threshold(engine, cases, thresholds, log=lambda m: print(m, file=sys.stderr),
                                       ignore_thresholds=ignore)
        emit({"threshold_sweep": table, "n": sum(c.kind != "barge-in" for c in cases), "manifest": str(manifest),
              "model": str(args.model)}, args, "Answer threshold sweep")
        if not args.json:
            for row in table:
                delay = row["end_of_turn_delay_ms"]
                print(f"thresholds {row['answer_threshold']} / {row['ignore_threshold']}: false answers "
                      f"{row['false_answer_rate']}, missed "
                      f"{row['missed_request_rate']}, end-of-turn delay p50 {delay['p50']} p95 {delay['p95']}")
        return 0
    result = evaluate_duplex(engine, cases, log=lambda m: print(m, file=sys.stderr),
                             packet_samples=args.packet_ms * SAMPLE_RATE // 1000)
    emit({**result, "packet_ms": args.packet_ms, "answer_threshold": engine.config.answer_threshold,
          "ignore_threshold": engine.config.ignore_threshold, "manifest": str(manifest),
          "model": str(args.model)}, args, "Duplex behaviour")
    return 0


def run_latency(args: argparse.Namespace) -> int:
    from freeze_omni.eval.latency import SPEECH_TOKEN, STAGES, build_cases, evaluate_latency
    from freeze_omni.eval.report import write_percentile_chart
    from freeze_omni.paths import data_dir
    from freeze_omni.train.turns import read_turn_utterances

    manifest = args.manifest or data_dir() / "corpus" / "default" / "test.jsonl"
    cases = build_cases(read_turn_utterances(manifest), args.turns)
    engine = load_engine(args.model, args.max_tokens, speech=True, draft_threshold=args.draft_threshold)
    result = evaluate_latency(engine, cases, log=lambda m: print(m, file=sys.stderr))
    result = {"first_packet_ms": result.pop("first_packet_ms"), **result,
              "draft_threshold": engine.config.draft_threshold, "model": str(args.model)}
    if args.report:
        chart = args.report.with_suffix(".svg")
        write_percentile_chart(chart, f"End of user speech to each stage ({result['n']} turns)",
                               {k: result[k] for k in (*STAGES[:3], SPEECH_TOKEN, STAGES[3])
                                if result[k]["p50"] is not None})
        result["chart"] = str(chart)
    emit(result, args, "Latency from end of user speech")
    return 0


def register(commands) -> None:
    sub = add_leaf(commands, "spoken-qa", "answer accuracy with spoken vs typed questions (same LLM)", run_spoken_qa)
    sub.add_argument("--set", type=Path, metavar="F.jsonl",
                     help="spoken QA set (audio, question, answers); default: quiz questions of the corpus test split")
    sub.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model folder (default: the shipped model)")
    sub.add_argument("--limit", type=int, default=100, help="at most this many items")
    sub.add_argument("--max-tokens", type=int, default=ANSWER_TOKENS, help="answer length limit for both (tokens)")
    add_report_arguments(sub)

    sub = add_leaf(commands, "duplex", "end-of-turn delay, false answers, missed requests, barge-in stop time", run_duplex)
    sub.add_argument("--manifest", type=Path, metavar="M.jsonl",
                     help="corpus manifest with kind/speech_start/speech_end (default: the corpus test split)")
    sub.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model folder (default: the shipped model)")
    sub.add_argument("--requests", type=int, default=60, help="requests; a third as many of each kind not meant "
                     "for the assistant, half as many barge-ins")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--max-tokens", type=int, default=ANSWER_TOKENS, help="answer length limit (tokens)")
    sub.add_argument("--answer-threshold", type=float, help="p(answer) needed to take the turn (default: the model's)")
    sub.add_argument("--sweep", metavar="T1,T2,...", help="instead: false answers, missed requests and delay for "
                     "each answer threshold, from one pass with answers off (barge-ins left out)")
    sub.add_argument("--ignore-threshold", type=float, help="p(ignore) needed to drop the turn (default: the model's)")
    sub.add_argument("--ignore-sweep", metavar="U1,U2,...", help="with --sweep: also each of these ignore thresholds "
                     "(one pass each)")
    sub.add_argument("--packet-ms", type=positive_int, default=32, help="input goes in packets this long, as a "
                     "client sends them (default 32, as the web page does; 160: whole chunks)")
    add_report_arguments(sub)

    sub = add_leaf(commands, "latency", "wall-clock latency per stage from the end of user speech (p50/p95)",
                   run_latency)
    sub.add_argument("--manifest", type=Path, metavar="M.jsonl",
                     help="corpus manifest with kind/speech_end (default: the corpus test split)")
    sub.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model folder (default: the shipped model)")
    sub.add_argument("--turns", type=int, default=50)
    add_draft_threshold(sub)
    sub.add_argument("--max-tokens", type=int, default=ANSWER_TOKENS, help="answer length limit (tokens)")
    add_report_arguments(sub)
