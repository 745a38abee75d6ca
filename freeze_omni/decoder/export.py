"""Training checkpoints -> the shipped fp16 decoder file.

    python -m freeze_omni.decoder.export tts DATA/runs/decoder-tts OUT.safetensors
    python -m freeze_omni.decoder.export prefix DATA/runs/decoder-prefix OUT.safetensors --base DECODER.safetensors

`tts` takes the whole decoder from a decoder-tts run (its prefix decoder untrained); `prefix`
takes the base decoder file and replaces its NAR prefix decoder with the one a decoder-prefix
run trained. The run's config, step and last held-out figures go into the metadata.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from freeze_omni.decoder.model import SpeechDecoder
from freeze_omni.decoder.weights import load_decoder, save_decoder


def _checkpoint(run: Path) -> dict:
    path = run / "last.pt"
    if not path.is_file():
        raise SystemExit(f"{path}: no checkpoint")
    return torch.load(path, map_location="cpu", weights_only=False)


def _last_eval(run: Path) -> dict:
    figures = {}
    log = run / "log.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            record = json.loads(line)
            if "eval" in record:
                figures = {"step": record["step"], **record["eval"]}
    return figures


def _weights(checkpoint: dict) -> dict[str, torch.Tensor]:
    return {k.removeprefix("decoder."): v for k, v in checkpoint["model"].items() if k.startswith("decoder.")}


def export_tts(run: Path, out: Path) -> Path:
    from freeze_omni.codec.model import Codec
    from freeze_omni.train.stages.decoder_tts import DecoderTTSSettings

    checkpoint = _checkpoint(run)
    settings = DecoderTTSSettings.from_dict(checkpoint["config"]["stage"])
    codec = Codec.load(settings.codec) if settings.codec else Codec.load()
    model = SpeechDecoder(settings.decoder_config(codec))
    model.load_state_dict(_weights(checkpoint))
    return save_decoder(model, out, {"tts_training": {"step": checkpoint["step"], "config": checkpoint["config"],
                                                      "eval": _last_eval(run)}})


def export_prefix(run: Path, base: Path, out: Path) -> Path:
    from safetensors import safe_open

    checkpoint = _checkpoint(run)
    model = load_decoder(base)
    prefix = {k.removeprefix("prefix."): v for k, v in _weights(checkpoint).items() if k.startswith("prefix.")}
    model.prefix.load_state_dict(prefix)
    with safe_open(str(base), framework="pt") as f:
        metadata = {k: v for k, v in f.metadata().items() if k != "config"}
    metadata["prefix_training"] = json.dumps({"step": checkpoint["step"], "config": checkpoint["config"],
                                              "eval": _last_eval(run)})
    return save_decoder(model, out, metadata)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freeze_omni.decoder.export", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("tts", "prefix"))
    parser.add_argument("run", type=Path, help="the training run folder (holds last.pt and log.jsonl)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--base", type=Path, help="prefix: the decoder file whose prefix decoder is replaced")
    args = parser.parse_args(argv)
    if args.what == "tts":
        path = export_tts(args.run, args.out)
    else:
        if not args.base:
            parser.error("prefix needs --base")
        path = export_prefix(args.run, args.base, args.out)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
