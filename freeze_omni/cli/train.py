"""`freeze-omni train STAGE`: one subcommand per training stage.

A stage reads its packaged TOML config (or `--config`), which `--set` and the flags below can
override; it resumes from the checkpoint in its output folder when one is there.
"""

from __future__ import annotations

import argparse
import importlib
import json
import tomllib
from pathlib import Path

from freeze_omni.cli import add_group, add_leaf, non_negative_int
from freeze_omni.errors import FreezeOmniError
from freeze_omni.paths import DEFAULT_MODEL_DIR

CONFIG_DIR = Path(__file__).resolve().parent.parent / "train" / "configs"

# stage name -> (help, module with <Name>Stage and <Name>Settings, class prefix)
STAGES = {
    "encoder-ctc": ("input stage 1: streaming encoder with CTC", "freeze_omni.train.stages.encoder_ctc", "EncoderCTC"),
    "copy-prompt": ("input stage 2a: prompt embeddings that make the frozen LLM copy, from text",
                    "freeze_omni.train.stages.copy_prompt", "CopyPrompt"),
    "encoder-llm": ("input stage 2: encoder + adapter into the frozen LLM", "freeze_omni.train.stages.encoder_llm",
                    "EncoderLLM"),
    "encoder-qa": ("input stage 3: spoken dialogue self-distillation + state head",
                   "freeze_omni.train.stages.encoder_qa", "EncoderQA"),
    "decoder-tts": ("output stage 2: AR speech decoder on text-speech pairs", "freeze_omni.train.stages.decoder_tts",
                    "DecoderTTS"),
    "decoder-prefix": ("output stage 3: NAR prefix decoder on LLM hidden states",
                       "freeze_omni.train.stages.decoder_prefix", "DecoderPrefix"),
}


def parse_assignment(text: str) -> tuple[str, object]:
    """`key=value` with a TOML value (`max_chunk=8`, `init="scratch"`; bare words become strings)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise FreezeOmniError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value


def run_stage(args: argparse.Namespace) -> int:
    import torch

    from freeze_omni.paths import data_dir
    from freeze_omni.train.config import TrainConfig
    from freeze_omni.train.loop import train

    help, module_name, prefix = STAGES[args.stage]
    overrides = {k: v for k, v in (("out_dir", args.out), ("max_steps", args.max_steps),
                                    ("max_minutes", args.max_minutes)) if v is not None}
    config = TrainConfig.from_toml(args.config or CONFIG_DIR / f"{args.stage.replace('-', '_')}.toml", overrides)
    config.stage.update(dict(parse_assignment(a) for a in args.set))
    if not config.out_dir:
        config.out_dir = str(data_dir() / "runs" / args.stage)
    module = importlib.import_module(module_name)
    settings = getattr(module, f"{prefix}Settings").from_dict(config.stage)
    stage = getattr(module, f"{prefix}Stage")(settings)
    result = train(stage, config, device=torch.device(args.device))
    print(json.dumps({"stage": args.stage, "out_dir": config.out_dir, **result}))
    return 0


def export_model(args: argparse.Namespace) -> int:
    from freeze_omni.paths import DEFAULT_MODEL_DIR, data_dir
    from freeze_omni.train.stages.encoder_qa import export_bundle

    run = Path(args.run_dir) if args.run_dir else data_dir() / "runs" / "encoder-qa"
    out = Path(args.out) if args.out else DEFAULT_MODEL_DIR
    llm_weights = "int8" if args.int8_llm else ""
    export_bundle(run / "last.pt", out, args.answer_threshold, llm_weights)
    print(json.dumps({"checkpoint": str(run / "last.pt"), "model_dir": str(out),
                      "answer_threshold": args.answer_threshold, "llm_weights": llm_weights}))
    return 0


def fit_head(args: argparse.Namespace) -> int:
    import shutil
    import sys
    from dataclasses import replace

    import torch

    from freeze_omni.bundle import read_spec, write_spec
    from freeze_omni.cli.eval_dialogue import ANSWER_TOKENS, load_engine
    from freeze_omni.eval.duplex import build_cases
    from freeze_omni.paths import data_dir
    from freeze_omni.safetensors_io import save_fp16
    from freeze_omni.train.state_head_fit import (fit_state_head, hear_cases, join, load_replays, save_replays,
                                                  talk_over_cases)
    from freeze_omni.train.turns import TurnSettings, read_turn_utterances

    source, out = Path(args.model), Path(args.out)
    if out.exists() and out.resolve() == source.resolve():
        raise FreezeOmniError("--out must be another folder: the source bundle stays as it is")
    torch.set_num_threads(args.threads)
    settings = TurnSettings(decide_after=args.decide_after)
    manifest = args.manifest or data_dir() / "corpus" / "default" / "train.jsonl"
    key = {"model": str(source.resolve()), "manifest": str(Path(manifest).resolve()), "requests": args.requests,
           "seed": args.seed, "acoustic_chunks": args.acoustic_chunks, "talk_overs": args.talk_overs}

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    heard = load_replays(args.replays, key) if args.replays else None
    if heard is None:
        utterances = read_turn_utterances(manifest)
        heard = hear_cases(load_engine(source, 8, speech=False), build_cases(utterances, args.requests, args.seed),
                           args.acoustic_chunks, log=log)
        if args.talk_overs:  # other turns (another seed); answers spoken as the bundle does
            talk_overs = talk_over_cases(build_cases(utterances, args.talk_overs, args.seed + 1))
            heard = join([heard, hear_cases(load_engine(source, ANSWER_TOKENS, speech=True), talk_overs,
                                            args.acoustic_chunks, log=log, talk_overs=True)])
        if args.replays:
            save_replays(args.replays, key, heard)
    labels = heard.labels(settings)
    head = fit_state_head(heard.hidden, heard.acoustic, labels, args.acoustic_chunks, seed=args.seed)
    shutil.copytree(source, out, dirs_exist_ok=True)
    save_fp16(out / "state_head.safetensors", head.state_dict())
    write_spec(out, replace(read_spec(out), state_acoustic_chunks=args.acoustic_chunks,
                            answer_threshold=args.answer_threshold, ignore_threshold=args.ignore_threshold))
    print(json.dumps({"model_dir": str(out), "from": str(source), "manifest": str(manifest),
                      "chunks": int(labels.numel()), "labelled": int((labels >= 0).sum()),
                      "acoustic_chunks": args.acoustic_chunks, "decide_after": args.decide_after,
                      "answer_threshold": args.answer_threshold, "ignore_threshold": args.ignore_threshold}))
    return 0


def register(commands) -> None:
    stages = add_group(commands, "train", "train one stage of the model", "STAGE")
    for name, (help, _, _) in STAGES.items():
        sub = add_leaf(stages, name, help, run_stage)
        sub.set_defaults(stage=name)
        sub.add_argument("--config", type=Path, help="TOML config (default: the packaged one for this stage)")
        sub.add_argument("--out", help="output folder for checkpoints and logs")
        sub.add_argument("--max-steps", type=int)
        sub.add_argument("--max-minutes", type=float, help="stop with a checkpoint after this long; rerun to resume")
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a [stage] setting")
        sub.add_argument("--device", default="cpu")
    sub = add_leaf(stages, "export", "write the model bundle (fp16) from the last input-stage-3 run", export_model)
    sub.add_argument("--from", dest="run_dir", metavar="RUN_DIR",
                     help="encoder-qa run folder (default: $FREEZE_OMNI_DATA/runs/encoder-qa)")
    sub.add_argument("--out", help="model folder to write (default: the packaged default model)")
    sub.add_argument("--answer-threshold", type=float, default=0.0,
                     help="p(answer) the state head needs to take the turn (tune with `eval duplex --sweep`)")
    sub.add_argument("--int8-llm", action="store_true",
                     help="the LLM runs with int8 weights at inference (model.json llm_weights; llm/int8.py)")
    sub = add_leaf(stages, "state-head", "refit a bundle's state head on what its turn engine hears "
                   "(replayed train-split turns; train/state_head_fit.py)", fit_head)
    sub.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="bundle to start from (default: the shipped one)")
    sub.add_argument("--out", required=True, help="folder for the new bundle (a copy with the new head)")
    sub.add_argument("--manifest", type=Path, help="corpus manifest to build turns from (default: the train split)")
    sub.add_argument("--requests", type=int, default=150,
                     help="requests; a third as many each of ignorable speech, fragments and noise")
    sub.add_argument("--talk-overs", type=non_negative_int, default=0,
                     help="also replay this many requests, and a third as many each of ignorable speech, fragments "
                     "and noise, spoken over the answer to another request")
    sub.add_argument("--acoustic-chunks", type=int, default=3,
                     help="chunks of mean encoder frames the head also reads (0: the LLM's hidden state only)")
    sub.add_argument("--decide-after", type=float, default=0.24, help="seconds after a sound its decision is due")
    sub.add_argument("--answer-threshold", type=float, default=0.0,
                     help="written to model.json (tune it on dev with `eval duplex --sweep`)")
    sub.add_argument("--ignore-threshold", type=float, default=0.0,
                     help="written to model.json (tune it on dev with `eval duplex --sweep ... --ignore-sweep`)")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--threads", type=int, default=1)
    sub.add_argument("--replays", type=Path, metavar="FILE",
                     help="keep what the engine heard here, and reuse it when model, turns and settings match "
                     "(any --decide-after: labels are made at fit time)")
    from freeze_omni.cli import train_codec

    train_codec.register(stages)
