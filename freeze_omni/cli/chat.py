"""`freeze-omni chat INPUT.wav`: talk to the model with a recording; it listens, decides, answers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from freeze_omni.cli import add_leaf, positive_int
from freeze_omni.paths import DEFAULT_MODEL_DIR


def run(args: argparse.Namespace) -> int:
    from freeze_omni.audio.io import read_audio
    from freeze_omni.bundle import missing_parts

    audio = read_audio(args.input)  # bad input is reported before anything else
    if missing := missing_parts(args.model):
        print(f"{args.prog}: the model in {args.model} is not complete yet; missing:", file=sys.stderr)
        for line in missing:
            print(f"  - {line}", file=sys.stderr)
        return 2
    turns = converse(args, audio)
    if args.json:
        print(json.dumps({"turns": turns}))
    elif not turns:
        print("no request was accepted (nothing the assistant should answer)")
    return 0


def converse(args: argparse.Namespace, audio) -> list[dict]:
    import numpy as np

    from freeze_omni.audio import SAMPLE_RATE
    from freeze_omni.audio.io import write_wav
    from freeze_omni.audio.vad import SpeechDetector
    from freeze_omni.bundle import load_model
    from freeze_omni.dialogue import TurnEngine
    from freeze_omni.dialogue.replay import replay

    model = load_model(args.model)
    engine = TurnEngine(model.speech_input, model.llm, model.state_head, SpeechDetector(), model.speaker,
                        config=model.spec.dialogue_config())
    log = (lambda event: None) if args.json else _print_event
    turns = replay(engine, audio, realtime=args.realtime, on_event=log,
                   packet_samples=args.packet_ms * SAMPLE_RATE // 1000)
    out = []
    for number, turn in enumerate(turns, start=1):
        wav = None
        if turn.audio and args.output:
            wav = Path(args.output) if number == 1 else Path(args.output).with_stem(f"{Path(args.output).stem}_{number}")
            write_wav(wav, np.concatenate(turn.audio), turn.sample_rate)
            if not args.json:
                print(f"answer {number} audio: {wav}")
        out.append({"request": turn.request, "answer": turn.answer, "interrupted": turn.interrupted,
                    "state_events": turn.state_events, "latency_ms": turn.latency_ms,
                    "answer_wav": str(wav) if wav else None})
    if turns and not any(t.audio for t in turns) and not args.json:
        print(f"(answers are text only: {args.model} has no speech decoder)")
    return out


def _print_event(event) -> None:
    from freeze_omni.dialogue import AnswerAudio

    if isinstance(event, AnswerAudio):
        return
    fields = {k: v for k, v in vars(event).items() if k not in ("t_ms", "probabilities")}
    detail = " ".join(f"{k}={getattr(v, 'name', v)!s}" for k, v in fields.items())
    print(f"[{event.t_ms / 1000:7.2f} s] {type(event).__name__} {detail}".rstrip())


def register(commands) -> None:
    chat = add_leaf(commands, "chat", "talk to the model with a recording: it listens, decides, answers in speech", run)
    chat.add_argument("input", help="WAV/FLAC recording of the user (any rate)")
    chat.add_argument("-o", "--output", help="where to write the spoken answer (more turns: NAME_2.wav, ...)")
    chat.add_argument("--json", action="store_true", help="print one JSON object with every turn")
    chat.add_argument("--realtime", action="store_true", help="pace input like a live microphone")
    chat.add_argument("--packet-ms", type=positive_int, default=160, help="input goes in packets this long "
                      "(default 160: whole chunks; the web page sends 32, which pauses a talked-over answer sooner)")
    chat.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model folder (default: the shipped model)")
