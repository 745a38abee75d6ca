"""The voice catalogue: every TTS voice the corpus can use, its stable id, and its held-out status.

Held-out voices speak only in the `test` split, so test results show how the models do on a
timbre they never trained on. The set is fixed here (and documented in the corpus summary):
one Kokoro voice, the Scottish espeak accent, and the espeak variants f4 and m8, which no
training voice uses.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from freeze_omni.data import CorpusError

ENGINES = ("piper", "espeak", "kokoro")


@dataclass(frozen=True)
class VoiceSpec:
    id: str  # stable, used in file names and manifests: "piper-joe", "espeak-en-us+f3"
    engine: str  # one of ENGINES
    name: str  # what the engine calls it: espeak "en-us+f3", Kokoro style pack "jf_alpha"
    held_out: bool = False


def _espeak(name: str, held_out: bool = False) -> VoiceSpec:
    return VoiceSpec(f"espeak-{name}", "espeak", name, held_out)


def _kokoro(name: str, held_out: bool = False) -> VoiceSpec:
    return VoiceSpec(f"kokoro-{name}", "kokoro", name, held_out)


VOICES: tuple[VoiceSpec, ...] = (
    VoiceSpec("piper-joe", "piper", "en_US-joe-medium"),
    _kokoro("jf_alpha"), _kokoro("jf_gongitsune"), _kokoro("jf_tebukuro"), _kokoro("jm_kumo"),
    _kokoro("jf_nezumi", held_out=True),
    *(_espeak(name) for name in (
        "en-us+m1", "en-us+m3", "en-us+m7", "en-us+f1", "en-us+f3",
        "en-gb+m2", "en-gb+m5", "en-gb+f2", "en-gb-x-rp+m7", "en-gb-x-rp+f5",
        "en-gb-x-gbclan+m4", "en-gb-x-gbcwmd+f1", "en-029+m6", "en-029+f3",
        "en-us-nyc+m2", "en-us-nyc+f5",
    )),
    *(_espeak(name, held_out=True) for name in ("en-gb-scotland+m8", "en-gb-scotland+f4", "en-us+f4")),
)
_BY_ID = {voice.id: voice for voice in VOICES}


def select_voices(names: Sequence[str] | None) -> list[VoiceSpec]:
    """Voices by id or by engine name ("espeak" = all espeak voices); None = the whole catalogue."""
    if not names:
        return list(VOICES)
    chosen: dict[str, VoiceSpec] = {}
    for name in names:
        if name in ENGINES:
            chosen.update((v.id, v) for v in VOICES if v.engine == name)
        elif name in _BY_ID:
            chosen[name] = _BY_ID[name]
        else:
            raise CorpusError(
                f"unknown voice {name!r}; use an engine ({', '.join(ENGINES)}) or an id such as "
                f"piper-joe, espeak-en-us+f3, kokoro-jf_alpha (see --list-voices)"
            )
    return [v for v in VOICES if v.id in chosen]


@dataclass(frozen=True)
class Delivery:
    """How one utterance is spoken, beyond the voice itself."""

    rate: float = 1.0  # speaking rate relative to the voice's default (1.1 = 10 % faster)
    pitch: float = 1.0  # espeak: base pitch relative to its default
    expressiveness: float = 1.0  # piper: multiplier on the sampling noise (prosody and timbre)


RATE_RANGE = (0.85, 1.2)


def sample_delivery(voice: VoiceSpec, rng: random.Random) -> Delivery:
    """A random delivery in the range each engine still speaks clearly in."""
    rate = round(rng.uniform(*RATE_RANGE), 3)
    if voice.engine == "espeak":
        return Delivery(rate=rate, pitch=round(rng.uniform(0.6, 1.4), 3))
    if voice.engine == "piper":
        return Delivery(rate=rate, expressiveness=round(rng.uniform(0.7, 1.3), 3))
    return Delivery(rate=rate)
