"""Which text each voice speaks, in which split: the corpus plan, fixed before any audio exists.

Splits keep whole sentences and whole voices apart:
- a sentence's split comes from a hash of its words alone (not the seed), so every build, with
  any seed or voice list, holds the same sentences out of training;
- `dev` = held-out sentences spoken by training voices;
- `test` = other held-out sentences, each spoken once by a training voice and once by a
  held-out voice (voices that appear nowhere else);
- `train` = all remaining sentences, spoken only by training voices.

Every decision for a text comes from a random stream seeded by (seed, text), and each utterance's
id hashes everything that shapes its audio, so a re-run with more hours only adds utterances and a
resumed build recognises exactly the work already done.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from freeze_omni.data import CorpusError
from freeze_omni.data.texts import TextItem, text_key
from freeze_omni.data.voices import ENGINES, Delivery, VoiceSpec, sample_delivery

SPLITS = ("train", "dev", "test")
SHORT_KINDS = ("reply", "filler")


@dataclass(frozen=True)
class SplitPolicy:
    test_fraction: float = 0.05
    dev_fraction: float = 0.05


@dataclass(frozen=True)
class EngineMix:
    """Share of training audio per engine. Kokoro sounds most natural but costs ~7x Piper."""

    shares: dict[str, float] = field(default_factory=lambda: {"piper": 0.5, "espeak": 0.38, "kokoro": 0.12})
    short_boost: int = 6  # replies and fillers are few and short: speak each this many times more


# Seconds of audio per word and per utterance (padding included), measured on a default build;
# only used to size the plan, the manifests record real durations.
SECONDS_PER_WORD = 0.30
SECONDS_PER_UTTERANCE = 0.6
# Compute per second of audio on one core (synthesis only), for the time estimate.
CORE_SECONDS_PER_AUDIO_SECOND = {"piper": 0.09, "espeak": 0.015, "kokoro": 0.6}
CORE_SECONDS_PER_UTTERANCE = 0.04


@dataclass(frozen=True)
class Utterance:
    id: str
    item: TextItem
    voice: VoiceSpec
    split: str
    delivery: Delivery

    @property
    def audio_path(self) -> str:
        """Relative to the corpus folder (where the manifests live)."""
        return f"wavs/{self.split}/{self.voice.id}/{self.id}.wav"


def text_split(text: str, policy: SplitPolicy = SplitPolicy()) -> str:
    """A text's split from a hash of its words: stable across seeds, builds and machines."""
    digest = hashlib.sha256(text_key(text).encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < policy.test_fraction:
        return "test"
    return "dev" if u < policy.test_fraction + policy.dev_fraction else "train"


def estimated_seconds(text: str) -> float:
    return SECONDS_PER_UTTERANCE + SECONDS_PER_WORD * len(text.split())


def _utterance(item: TextItem, voice: VoiceSpec, split: str, index: int, seed: int,
               rng: random.Random) -> Utterance:
    delivery = sample_delivery(voice, rng)
    fingerprint = f"{seed}|{text_key(item.text)}|{item.text}|{voice.id}|{split}|{index}|{asdict(delivery)}"
    return Utterance(hashlib.sha1(fingerprint.encode()).hexdigest()[:16], item, voice, split, delivery)


class _VoicePicker:
    """Picks a voice per rendition: engine by the mix, then a voice of it not yet used for the text."""

    def __init__(self, voices: Sequence[VoiceSpec], mix: EngineMix) -> None:
        self.by_engine = {e: [v for v in voices if v.engine == e] for e in ENGINES}
        self.engines = [e for e in ENGINES if self.by_engine[e] and mix.shares.get(e, 0) > 0]
        if not self.engines:  # voices whose engines the mix gives no share: use them evenly
            self.engines = [e for e in ENGINES if self.by_engine[e]]
            self.weights = [1.0] * len(self.engines)
        else:
            self.weights = [mix.shares[e] for e in self.engines]

    def pick(self, rng: random.Random, used: set[str]) -> VoiceSpec:
        engine = rng.choices(self.engines, self.weights)[0]
        fresh = [v for v in self.by_engine[engine] if v.id not in used]
        return rng.choice(fresh or self.by_engine[engine])


def plan_corpus(texts: Sequence[TextItem], voices: Sequence[VoiceSpec], hours: float, seed: int = 0,
                mix: EngineMix = EngineMix(), policy: SplitPolicy = SplitPolicy()) -> list[Utterance]:
    """All utterances of the corpus, in a stable order (by text, then rendition)."""
    training = [v for v in voices if not v.held_out]
    held_out = [v for v in voices if v.held_out]
    if not training:
        raise CorpusError("no training voice selected: held-out voices may only speak the test split")
    if not texts:
        raise CorpusError("no texts to speak")
    picker = _VoicePicker(training, mix)
    splits = [text_split(item.text, policy) for item in texts]
    boost = [mix.short_boost if item.kind in SHORT_KINDS else 1 for item in texts]
    fixed = sum(estimated_seconds(item.text) * (1 + (split == "test" and bool(held_out)))
                for item, split in zip(texts, splits) if split != "train")
    train_seconds = sum(estimated_seconds(item.text) * b for item, split, b in zip(texts, splits, boost)
                        if split == "train")
    per_text = max(0.0, hours * 3600 - fixed) / train_seconds if train_seconds else 0.0

    plan: list[Utterance] = []
    for item, split, b in zip(texts, splits, boost):
        rng = random.Random(f"{seed}|{text_key(item.text)}")
        wanted = per_text * b
        count = math.floor(wanted) + (rng.random() < wanted - math.floor(wanted))
        if split != "train":
            count = 1
        used: set[str] = set()
        for index in range(count):
            voice = picker.pick(rng, used)
            used.add(voice.id)
            plan.append(_utterance(item, voice, split, index, seed, rng))
        if split == "test" and held_out:
            plan.append(_utterance(item, rng.choice(held_out), split, count, seed, rng))
    return plan


def execution_order(plan: Sequence[Utterance], seed: int = 0) -> list[Utterance]:
    """A shuffled order, so slow and fast engines interleave and progress rates mean something."""
    order = list(plan)
    random.Random(f"order-{seed}").shuffle(order)
    return order


def estimated_core_seconds(plan: Sequence[Utterance]) -> float:
    return sum(
        CORE_SECONDS_PER_UTTERANCE
        + CORE_SECONDS_PER_AUDIO_SECOND[u.voice.engine] * estimated_seconds(u.item.text) / u.delivery.rate
        for u in plan
    )
