"""Text -> phoneme ids with the Piper voice's own phonemiser (espeak-ng inside piper-tts).

The AR decoder reads exactly the ids the voice's text encoder reads, so the alignment it learns
(Piper's durations per id) and what it is given at inference are the same symbols. No ONNX
session is needed to phonemise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

import numpy as np

from freeze_omni.codec.piper_latent import voice_files


@dataclass(frozen=True)
class PhonemeSentence:
    phonemes: tuple[str, ...]
    ids: np.ndarray  # [P] int64, with Piper's BOS, pads and EOS


class Phonemizer:
    def __init__(self) -> None:
        from piper import PiperVoice
        from piper.config import PiperConfig

        config = json.loads(voice_files()[1].read_text(encoding="utf-8"))
        self.symbols = int(config["num_symbols"])
        self.voice = PiperVoice(session=None, config=PiperConfig.from_dict(config))

    def sentences(self, text: str) -> list[PhonemeSentence]:
        """One entry per sentence, as Piper splits and speaks the text."""
        return [PhonemeSentence(tuple(p), np.array(self.voice.phonemes_to_ids(p), np.int64))
                for p in self.voice.phonemize(text) if p]


@cache
def shared_phonemizer() -> Phonemizer:
    return Phonemizer()
