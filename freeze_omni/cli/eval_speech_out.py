"""`freeze-omni eval speech-out`: how intelligible the system's own speech is, per top-k."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from freeze_omni.cli import add_leaf, add_prior_weight, non_negative_int, positive_int, prior_weight
from freeze_omni.errors import FreezeOmniError
from freeze_omni.eval.report import add_report_arguments, emit


def parse_top_k(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("top-k values must be >= 1")
    return values


def run(args: argparse.Namespace) -> int:
    import torch

    from freeze_omni.codec.model import Codec
    from freeze_omni.decoder.onnx_step import load_onnx_step
    from freeze_omni.decoder.sampling import SamplingConfig
    from freeze_omni.decoder.weights import DEFAULT_DECODER_PATH, load_decoder
    from freeze_omni.eval.manifest import evenly_spaced
    from freeze_omni.eval.speech_out import evaluate_speech_out, read_texts

    from freeze_omni.dialogue.phrases import PhraseRule

    if args.first_words is not None and not args.phrases:
        raise FreezeOmniError("--first-words sets how --phrases cuts: give --phrases too")
    if args.phrases and args.no_prefix:
        raise FreezeOmniError("--phrases needs the LLM to cut its answers: leave out --no-prefix")
    phrases = None
    if args.phrases:
        phrases = PhraseRule() if args.first_words is None else PhraseRule(first_words=args.first_words)
    torch.set_num_threads(args.threads)
    texts = evenly_spaced(read_texts(args.texts), args.limit)
    model = load_decoder(args.decoder or DEFAULT_DECODER_PATH)
    codec = Codec.load(args.codec) if args.codec else Codec.load()
    onnx_step = load_onnx_step(model.decoder, args.threads) if args.step == "onnx" else None
    llm = None
    if not args.no_prefix:
        from freeze_omni.llm import FrozenLLM

        llm = FrozenLLM.load(args.llm or None)
    print(f"speech-out: {len(texts)} texts, top-k {args.top_k}, prefix {'on' if llm else 'off'}, "
          f"AR step on {'torch' if onnx_step is None else 'onnx'}", file=sys.stderr)
    result = evaluate_speech_out(texts, model, codec, args.top_k, llm, threads=args.threads,
                                 floors=not args.no_floors, onnx_step=onnx_step,
                                 sampling=SamplingConfig(pace_bias=args.pace_bias, prior_weight=prior_weight(args)),
                                 phrases=phrases)
    emit(result, args, "Speech output intelligibility (reference ASR)")
    return 0


def register(commands) -> None:
    sub = add_leaf(commands, "speech-out", "intelligibility of the system's own speech per top-k", run)
    sub.add_argument("--texts", type=Path, required=True, help="plain text, one sentence a line")
    sub.add_argument("--top-k", type=parse_top_k, default=[1, 2, 3, 5], help="comma-separated (default 1,2,3,5)")
    sub.add_argument("--limit", type=positive_int, metavar="N", help="N texts spread evenly over the file")
    sub.add_argument("--no-prefix", action="store_true", help="skip the LLM and the prefix decoder")
    sub.add_argument("--no-floors", action="store_true", help="skip the source and codec-resynthesis WER")
    sub.add_argument("--phrases", action="store_true",
                     help="speak each answer phrase by phrase, cut as the dialogue cuts it (each phrase on its own)")
    sub.add_argument("--first-words", type=non_negative_int, metavar="N",
                     help="with --phrases: the first phrase ends after N words (default: the dialogue's 3; 0: off)")
    sub.add_argument("--decoder", type=Path, help="decoder weights (default: the default model's)")
    sub.add_argument("--codec", type=Path, help="codec weights (default: the default model's)")
    sub.add_argument("--llm", help="HF directory or .gguf (default: the shipped backbone)")
    sub.add_argument("--threads", type=int, default=1, help="torch, ONNX Runtime and ASR threads (default 1)")
    sub.add_argument("--pace-bias", type=float, default=0.0,
                     help="added to the logits that end a phoneme: below 0 speaks slower (default 0)")
    add_prior_weight(sub)
    sub.add_argument("--step", choices=("onnx", "torch"), default="onnx",
                     help="run the AR decoder's step on ONNX Runtime (default) or on the torch module")
    add_report_arguments(sub)
