"""`freeze-omni train codec`: k-means codebook(s) over the Piper voice's latent + resynthesis WER."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from freeze_omni.cli import add_leaf, positive_int
from freeze_omni.eval.report import add_report_arguments, emit

HELP = "output stage 1: single-codebook codec (k-means over the Piper voice's latent)"
DOMAINS = ("prior", "z")


def register(commands) -> None:
    sub = add_leaf(commands, "codec", HELP, run)
    sub.add_argument("--out", type=Path, metavar="DIR",
                     help="where codebooks and the report go (default: DATA/codec/runs)")
    sub.add_argument("--codes", type=positive_int, default=4096, metavar="K", help="codebook size (default 4096)")
    sub.add_argument("--stack", type=positive_int, default=2, metavar="S",
                     help="latent frames per token: 2 = 43 tokens/s (default), 1 = 86 tokens/s")
    sub.add_argument("--domain", choices=DOMAINS, default="prior",
                     help="prior: quantise the voice's prior mean, decode through its flow (default); "
                          "z: quantise the sampled latent z")
    sub.add_argument("--variants", type=_variants, metavar="[DOMAIN:]KxS,..",
                     help="compare several codecs on the same data and sentences, e.g. prior:4096x1,z:4096x2")
    sub.add_argument("--sentences", type=positive_int, default=2000, metavar="N",
                     help="training texts (train split) spoken by the voice (default 2000)")
    sub.add_argument("--iterations", type=positive_int, default=10, metavar="I", help="k-means iterations (default 10)")
    sub.add_argument("--max-vectors", type=positive_int, default=200_000, metavar="N",
                     help="k-means runs on a random subset of at most N vectors (default 200000)")
    sub.add_argument("--eval-sentences", type=_count, default=200, metavar="N",
                     help="held-out texts for the resynthesis WER; 0 skips it (default 200)")
    sub.add_argument("--eval-split", choices=("dev", "test"), default="dev",
                     help="corpus split the held-out texts come from (default dev)")
    sub.add_argument("--latents", type=Path, metavar="DIR",
                     help="cache of extracted latents, reused across runs (default: DATA/codec/latents)")
    sub.add_argument("--seed", type=int, default=0, help="texts, deliveries and k-means seed (default 0)")
    sub.add_argument("--threads", type=positive_int, metavar="T", help="CPU threads (default: all)")
    sub.add_argument("--retrain", action="store_true", help="train again even if the codebook file exists")
    sub.add_argument("--save-wavs", action="store_true", help="write the source and resynthesised WAVs")
    sub.add_argument("--install", action="store_true",
                     help="also write the codebook to freeze_omni/models/default/codec.safetensors")
    add_report_arguments(sub)


def run(args: argparse.Namespace) -> int:
    import os

    import torch

    from freeze_omni.codec import train
    from freeze_omni.codec.model import DEFAULT_CODEC_PATH, Codec, CodecConfig
    from freeze_omni.errors import FreezeOmniError
    from freeze_omni.paths import data_dir

    configs = [CodecConfig(codes, stack, domain or args.domain)
               for domain, codes, stack in (args.variants or [(args.domain, args.codes, args.stack)])]
    if args.install and len(configs) != 1:
        raise FreezeOmniError("--install takes one codec: use --domain/--codes/--stack, not --variants")
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    out = args.out or data_dir() / "codec" / "runs"
    latent_root = args.latents or data_dir() / "codec" / "latents"
    recipe = {"sentences": args.sentences, "iterations": args.iterations, "seed": args.seed,
              "max_vectors": args.max_vectors}

    started = time.perf_counter()
    texts = train.split_texts("train", args.seed)
    if len(texts) < args.sentences:
        _log(f"only {len(texts)} training texts available (asked {args.sentences})")
    texts = texts[: args.sentences]
    latents = train.extract_latents(texts, latent_root / f"train-seed{args.seed}", args.seed, threads, log=_log)
    _log(f"training latents: {len(texts)} texts, {len(latents.sentences)} sentences, "
         f"{latents.frames} frames = {latents.seconds / 60:.1f} min of speech "
         f"({time.perf_counter() - started:.0f} s)")

    codecs: dict[str, Codec] = {}
    figures: dict[str, dict] = {}
    for config in configs:
        name, path = config.name, out / f"codec-{config.name}.safetensors"
        if path.is_file() and not args.retrain and _recipe(path) == recipe:
            codecs[name] = Codec.load(path)
            figures[name] = json.loads(_metadata(path).get("training", "{}"))
            _log(f"{name}: reusing {path}")
            continue
        codec, result = train.train_codec(latents, config, args.iterations, args.seed, args.max_vectors, _log)
        figures[name] = {
            "domain": config.domain, "codes": config.codes, "stack": config.stack,
            "tokens_per_second": round(config.tokens_per_second, 2),
            "kmeans_seconds": round(result.seconds, 1), "distortion": round(result.distortion[-1], 5),
            "initial_distortion": round(result.distortion[0], 5),
            "training_speech_minutes": round(latents.seconds / 60, 1),
        }
        codec.save(path, {"recipe": recipe, "training": figures[name]})
        codecs[name] = codec
        _log(f"{name}: saved {path} ({path.stat().st_size / 1e6:.1f} MB, k-means {result.seconds:.0f} s)")
    del latents

    report: dict = {"variants": figures, "train_sentences": len(texts)}
    if args.eval_sentences:
        held_out = train.split_texts(args.eval_split, args.seed)[: args.eval_sentences]
        eval_latents = train.extract_latents(held_out, latent_root / f"{args.eval_split}-seed{args.seed}",
                                             args.seed, threads, log=_log)
        measured = train.resynthesis_wer(eval_latents, codecs, threads=threads,
                                         wav_dir=out / "wavs" if args.save_wavs else None)
        source = measured["variants"]["source"]
        for name, codec in codecs.items():  # keep the measurement with the weights
            figures[name].update(measured["variants"][name])
            codec.save(out / f"codec-{name}.safetensors", {
                "recipe": recipe, "training": figures[name], "source_wer": source["wer"],
                "eval_n": measured["n"], "eval_split": args.eval_split,
            })
        best = min(codecs, key=lambda n: figures[n]["wer"])
        report.update({
            "resynthesis_wer": figures[best]["wer"], "source_wer": source["wer"], "source_cer": source["cer"],
            "best_variant": best, "n": measured["n"], "eval_split": args.eval_split,
            "source_decode_x_realtime": source["decode_x_realtime"], "utterances": measured["utterances"],
        })
    if args.install:
        name = next(iter(codecs))
        codecs[name].save(DEFAULT_CODEC_PATH, _metadata(out / f"codec-{name}.safetensors"))
        _log(f"installed {name} as {DEFAULT_CODEC_PATH}")
    report["seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "codec-report.json").write_text(json.dumps(report, indent=1))
    emit(report, args, "Codec training and resynthesis WER")
    if not args.json:
        for name, f in figures.items():
            wer = f", WER {f['wer']:.3f}" if "wer" in f else ""
            print(f"  {name}: {f['tokens_per_second']} tokens/s{wer}")
    return 0


def _metadata(path: Path) -> dict:
    from freeze_omni.codec.model import read_metadata

    return {k: v for k, v in read_metadata(path).items() if k != "config"}


def _recipe(path: Path) -> dict | None:
    try:
        return json.loads(_metadata(path).get("recipe", "null"))
    except (OSError, ValueError):
        return None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _variants(text: str) -> list[tuple[str | None, int, int]]:
    found: list[tuple[str | None, int, int]] = []
    for part in (p.strip() for p in text.split(",")):
        domain, _, size = part.rpartition(":")
        try:
            codes, stack = (int(n) for n in size.lower().split("x"))
        except ValueError:
            codes = stack = 0
        if not part or (domain and domain not in DOMAINS) or codes < 1 or stack < 1:
            raise argparse.ArgumentTypeError(
                f"expected [DOMAIN:]CODESxSTACK pairs separated by commas (domains: {', '.join(DOMAINS)}), "
                f"got {text!r}")
        found.append((domain or None, codes, stack))
    return list(dict.fromkeys(found))


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value
