"""`freeze-omni say "text" -o out.wav`: the system's voice alone (speech decoder + codec, no LLM)."""

from __future__ import annotations

import argparse
from pathlib import Path

from freeze_omni.cli import add_leaf, add_prior_weight, positive_int, prior_weight


def run(args: argparse.Namespace) -> int:
    import sys

    import numpy as np
    import torch

    from freeze_omni.audio.io import write_wav
    from freeze_omni.codec.model import Codec
    from freeze_omni.decoder.sampling import SamplingConfig
    from freeze_omni.decoder.speaker import speak_text, speaker_for_inference
    from freeze_omni.decoder.weights import DEFAULT_DECODER_PATH, load_decoder
    from freeze_omni.errors import FreezeOmniError

    text = args.text if args.text != "-" else sys.stdin.read()
    if not text.strip():
        raise FreezeOmniError("nothing to say: the text is empty")
    torch.set_num_threads(args.threads)
    model = load_decoder(args.decoder or DEFAULT_DECODER_PATH)
    codec = Codec.load(args.codec) if args.codec else Codec.load()
    sampling = SamplingConfig(top_k=args.top_k or SamplingConfig.top_k, seed=args.seed, pace_bias=args.pace_bias,
                              prior_weight=prior_weight(args))
    speaker = speaker_for_inference(model, codec, sampling, use_prefix=False, threads=args.threads)
    packets = list(speak_text(speaker, text))
    if not packets:
        raise FreezeOmniError(f"no speakable words in {text!r}")
    audio = np.concatenate(packets)
    peak = float(np.abs(audio).max())
    write_wav(args.output, audio / peak * 0.95 if peak > 1e-8 else audio, speaker.sample_rate)
    print(f"{args.output}: {len(audio) / speaker.sample_rate:.2f} s", file=sys.stderr)
    return 0


def register(commands) -> None:
    sub = add_leaf(commands, "say", "speak text in the system's voice (speech decoder + codec, no LLM)", run)
    sub.add_argument("text", help="what to say ('-' reads stdin)")
    sub.add_argument("-o", "--output", type=Path, required=True, help="output WAV (22.05 kHz mono)")
    sub.add_argument("--top-k", type=positive_int,
                     help="AR sampling among the k likeliest symbols (default: as the dialogue speaks)")
    sub.add_argument("--pace-bias", type=float, default=0.0,
                     help="added to the logits that end a phoneme: below 0 speaks slower (default 0)")
    add_prior_weight(sub)
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--decoder", type=Path, help="decoder weights (default: the default model's)")
    sub.add_argument("--codec", type=Path, help="codec weights (default: the default model's)")
    sub.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (default 1)")
