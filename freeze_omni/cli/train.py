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

from freeze_omni.cli import add_group, add_leaf
from freeze_omni.errors import FreezeOmniError

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
    from freeze_omni.cli import train_codec

    train_codec.register(stages)
