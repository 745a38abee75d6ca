"""`freeze-omni bench speech-out`: first PCM packet after a phrase's text is ready, and the
real-time factor of decoder + codec, through the same `DecoderSpeaker` the dialogue uses."""

from __future__ import annotations

import argparse
import sys
import time

from freeze_omni.cli import add_leaf, add_prior_weight, positive_int, prior_weight
from freeze_omni.eval.report import add_report_arguments, emit

PHRASES = (
    "Sure, the capital of France is Paris.",
    "The meeting starts at seven thirty tomorrow morning, so please be on time.",
    "I think so.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Here is a short story about a fox who wanted to learn how to fly.",
)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from freeze_omni.codec.model import Codec
    from freeze_omni.decoder.sampling import SamplingConfig
    from freeze_omni.decoder.speaker import speaker_for_inference
    from freeze_omni.decoder.weights import DEFAULT_DECODER_PATH, load_decoder
    from freeze_omni.dialogue.speaker import Phrase
    from freeze_omni.errors import FreezeOmniError

    torch.set_num_threads(args.threads)
    model = load_decoder(args.decoder or DEFAULT_DECODER_PATH)
    codec = Codec.load(args.codec) if args.codec else Codec.load()
    sampling = SamplingConfig(top_k=args.top_k or SamplingConfig.top_k,
                              prior_weight=prior_weight(args))
    speaker = speaker_for_inference(model, codec, sampling, threads=args.threads, onnx=args.step == "onnx")
    generator = torch.Generator().manual_seed(0)

    def phrase(text: str) -> Phrase:
        # the prefix decoder's cost depends on the number of LLM tokens, not on their values
        tokens = max(1, len(text) // 4)
        return Phrase(text, list(range(tokens)), torch.randn(tokens, model.config.llm_hidden, generator=generator), 0)

    list(speaker.speak(phrase(PHRASES[0])))  # warm-up: phonemiser, ONNX sessions, allocations
    first_ms, compute_s, audio_s = [], 0.0, 0.0
    for repeat in range(args.repeats):
        for text in PHRASES:
            item = phrase(text)
            start = time.perf_counter()
            packets = speaker.speak(item)
            first = next(packets, None)
            if first is None:
                continue  # nothing speakable
            first_ms.append((time.perf_counter() - start) * 1000)
            rest = list(packets)
            compute_s += time.perf_counter() - start
            audio_s += (len(first) + sum(len(p) for p in rest)) / speaker.sample_rate
        print(f"repeat {repeat + 1}/{args.repeats}: first packet p50 {np.median(first_ms):.0f} ms", file=sys.stderr)
    if not first_ms:
        raise FreezeOmniError("the decoder produced no audio for any phrase")
    result = {
        "first_packet_ms": float(np.median(first_ms)),
        "rtf": compute_s / audio_s,
        "first_packet_ms_p95": float(np.percentile(first_ms, 95)),
        "x_realtime": audio_s / compute_s,
        "first_packet_tokens": speaker.packets.first_tokens,
        "top_k": speaker.sampling.top_k,
        "prior_weight": speaker.sampling.prior_weight,
        "threads": torch.get_num_threads(),
        "step": "onnx" if speaker.onnx_step is not None else "torch",
        "phrases": len(first_ms),
        "audio_s": round(audio_s, 2),
    }
    emit(result, args, "Speech output speed (decoder + codec)")
    return 0


def register(commands) -> None:
    sub = add_leaf(commands, "speech-out", "first packet latency and real-time factor of speech output", run)
    sub.add_argument("--decoder", help="decoder weights (default: the default model's)")
    sub.add_argument("--codec", help="codec weights (default: the default model's)")
    sub.add_argument("--top-k", type=positive_int, help="default: as the dialogue speaks")
    sub.add_argument("--repeats", type=int, default=3)
    sub.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (default 1)")
    sub.add_argument("--step", choices=("onnx", "torch"), default="onnx",
                     help="run the AR decoder's step on ONNX Runtime (default) or on the torch module")
    add_prior_weight(sub)
    add_report_arguments(sub)
