"""Spoken conversations for stage 3: which sounds make up a user turn, and the state label of
every 160 ms chunk of it, laid out exactly as the turn engine hears a turn.

The engine opens a turn at a VAD onset with up to ~1 s of pre-roll, prefills every chunk and lets
the state head decide on the last position of each chunk. So a training turn is some quiet lead,
the sound, quiet after it, cut at a whole number of chunks; its labels are, per chunk:
- LISTEN while the sound lasts (until `listen_margin` after its end);
- nothing (no loss) in the short gap after it, where either answer would be fine;
- from `decide_after` after the end: ANSWER for a request, IGNORE for anything not meant for the
  assistant. The turn stops after `extra` such chunks; a request's answer follows right there,
  as it does when the engine accepts a turn.
Sounds not meant for the assistant: fillers and backchannels, requests cut off mid-sentence (the
rest never comes) and noise bursts. An ignored turn is always a row's last turn, since the engine
forgets it (nothing later may attend to it).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.quiet import noise_floor
from freeze_omni.errors import FreezeOmniError
from freeze_omni.eval.manifest import read_speech_manifest
from freeze_omni.llm.state_head import DialogueState
from freeze_omni.train.sequences import IGNORE

CHUNK_SAMPLES = SAMPLE_RATE * 160 // 1000
CHUNK_SECONDS = CHUNK_SAMPLES / SAMPLE_RATE
EDGE_SECONDS = 1e-9  # a chunk ending this close before `decide_after` already decides (float sums)

REQUEST_KINDS = ("question", "statement")  # corpus kinds spoken to the assistant
IGNORE_KINDS = ("filler", "reply")          # backchannels and hesitations ("uh-huh", "okay", "um")
QUIET_DB = (-75.0, -50.0)                   # level of the noise floor under lead and tail


@dataclass(frozen=True)
class Utterance:
    """One corpus utterance with what stage 3 needs from its manifest line."""

    audio: str
    text: str
    kind: str
    speech_start: float  # seconds
    speech_end: float


def read_turn_utterances(manifest: Path, limit: int | None = None) -> list[Utterance]:
    items = read_speech_manifest(manifest, limit=limit)
    missing = [i for i in items if not {"kind", "speech_start", "speech_end"} <= set(i.extra)]
    if missing:
        raise FreezeOmniError(f"{manifest}:{missing[0].line}: stage 3 needs 'kind', 'speech_start' and 'speech_end' "
                              "(written by `freeze-omni data synth`)")
    return [Utterance(str(i.audio), i.text, i.extra["kind"], float(i.extra["speech_start"]),
                      float(i.extra["speech_end"])) for i in items]


@dataclass(frozen=True)
class TurnPlan:
    """One user turn, fully determined (a resumed run rebuilds the same audio and labels)."""

    sound: str          # "request", "ignore", "fragment" or "noise"
    utterance: int      # index into the utterances; -1 for none (noise, or audio given directly)
    lead: float         # seconds of quiet before the sound
    sound_seconds: float  # how much of the utterance (from its start) or of the noise is heard
    extra: int          # decision chunks after the first one
    seed: int           # quiet floor, noise colour and level

    @property
    def label(self) -> DialogueState:
        return DialogueState.ANSWER if self.sound == "request" else DialogueState.IGNORE

    @property
    def end(self) -> float:
        """Seconds into the turn's audio at which the sound ends."""
        return self.lead + self.sound_seconds


@dataclass(frozen=True)
class TurnSettings:
    listen_margin: float = 0.08   # chunks ending before sound end + this are LISTEN
    decide_after: float = 0.24    # chunks ending at or after sound end + this carry the decision
    max_extra: int = 2            # up to this many more decision chunks per turn
    lead: tuple[float, float] = (0.1, 0.8)
    max_turns: int = 3            # requests per conversation
    ignore_share: float = 0.4     # conversations that end with a turn not meant for the assistant
    ignore_mix: tuple[float, float, float] = (0.5, 0.3, 0.2)  # filler/reply, fragment, noise

    def __post_init__(self) -> None:
        if not 0.0 <= self.listen_margin <= self.decide_after:
            raise ValueError(f"need 0 <= listen_margin <= decide_after, got {self.listen_margin} and {self.decide_after}")


def chunk_label(after_end: float, label: DialogueState, settings: TurnSettings) -> int:
    """The label of one chunk that ends `after_end` seconds after its turn's sound ends (the rule
    above): LISTEN before `listen_margin`, `label` from `decide_after` on, no loss in between."""
    if after_end >= settings.decide_after - EDGE_SECONDS:
        return int(label)
    return int(DialogueState.LISTEN) if after_end < settings.listen_margin else IGNORE


def chunk_labels(end: float, label: DialogueState, extra: int, settings: TurnSettings) -> list[int]:
    """State label of every chunk of a turn whose sound ends at `end` seconds, up to `extra`
    chunks after the first decision; the last chunk is the one after which the turn stops."""
    first = math.ceil((end + settings.decide_after - EDGE_SECONDS) / CHUNK_SECONDS) - 1
    return [chunk_label((k + 1) * CHUNK_SECONDS - end, label, settings) for k in range(first + extra + 1)]


def plan_conversations(utterances: Sequence[Utterance], requests: Sequence[int], seed: int,
                       settings: TurnSettings) -> list[list[TurnPlan]]:
    """Every request utterance once, grouped into conversations of 1..max_turns requests, some
    followed by a turn the assistant must ignore. Fixed by `seed`."""
    rng = random.Random(seed)
    order = list(requests)
    rng.shuffle(order)
    ignorable = [i for i, u in enumerate(utterances) if u.kind in IGNORE_KINDS]
    conversations: list[list[TurnPlan]] = []
    while order:
        turns = [_request_turn(utterances[i], i, rng, settings) for i in order[:rng.randint(1, settings.max_turns)]]
        del order[:len(turns)]
        if rng.random() < settings.ignore_share:
            turns.append(_ignored_turn(utterances, ignorable, requests, rng, settings))
        conversations.append(turns)
    return conversations


def _request_turn(u: Utterance, index: int, rng: random.Random, settings: TurnSettings) -> TurnPlan:
    return TurnPlan("request", index, rng.uniform(*settings.lead), u.speech_end, rng.randint(0, settings.max_extra),
                    rng.randrange(2**31))


def _ignored_turn(utterances: Sequence[Utterance], ignorable: Sequence[int], requests: Sequence[int],
                  rng: random.Random, settings: TurnSettings) -> TurnPlan:
    lead, extra, seed = rng.uniform(*settings.lead), rng.randint(0, settings.max_extra), rng.randrange(2**31)
    sound = rng.choices(("ignore", "fragment", "noise"), settings.ignore_mix)[0]
    if sound == "ignore" and ignorable:
        index = rng.choice(ignorable)
        return TurnPlan("ignore", index, lead, utterances[index].speech_end, extra, seed)
    if sound == "noise" or not requests:
        return TurnPlan("noise", -1, lead, rng.uniform(0.3, 1.5), extra, seed)
    index = rng.choice(requests)
    u = utterances[index]
    cut = u.speech_start + rng.uniform(0.3, 0.7) * (u.speech_end - u.speech_start)
    return TurnPlan("fragment", index, lead, cut, extra, seed)


def turn_audio(turn: TurnPlan, utterance_audio: np.ndarray | None, n_chunks: int) -> np.ndarray:
    """The turn's 16 kHz samples: quiet lead, the sound, quiet after it, `n_chunks` chunks long.

    The quiet is a faint noise floor rather than digital zeros, as a microphone never gives zeros.
    """
    rng = np.random.default_rng(turn.seed)
    total = n_chunks * CHUNK_SAMPLES
    audio = noise_floor(total, rng.uniform(*QUIET_DB), rng)
    start = int(round(turn.lead * SAMPLE_RATE))
    length = int(round(turn.sound_seconds * SAMPLE_RATE))
    if turn.sound == "noise":
        sound = noise_burst(length, rng)
    else:
        sound = np.asarray(utterance_audio, np.float32)[:length]
        if turn.sound == "fragment":  # a short fade, so the cut itself is not a click to learn from
            fade = min(len(sound), SAMPLE_RATE // 100)
            sound = sound.copy()
            sound[len(sound) - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    end = min(total, start + len(sound))
    audio[start:end] += sound[: end - start]
    return audio


def turn_then_quiet(turn: TurnPlan, utterance_audio: np.ndarray | None, quiet_seconds: float) -> np.ndarray:
    """`turn_audio` up to the first whole chunk at least `quiet_seconds` after the sound ends: how
    evaluations present one turn with room for the answer."""
    return turn_audio(turn, utterance_audio, math.ceil((turn.end + quiet_seconds) / CHUNK_SECONDS))


def noise_burst(length: int, rng: np.random.Generator) -> np.ndarray:
    """A sound that is no speech: white, brown or hum-like noise under a smooth envelope."""
    kind = rng.integers(3)
    if kind == 0:
        noise = rng.standard_normal(length)
    elif kind == 1:
        noise = np.cumsum(rng.standard_normal(length))
        noise -= np.convolve(noise, np.ones(401) / 401, mode="same")
    else:
        t = np.arange(length) / SAMPLE_RATE
        noise = np.sin(2 * np.pi * rng.uniform(50, 400) * t) + 0.3 * rng.standard_normal(length)
    envelope = np.sin(np.linspace(0, np.pi, length)) ** rng.uniform(0.3, 2.0) if length else np.zeros(0)
    noise = noise * envelope
    peak = np.abs(noise).max() if length else 1.0
    return (noise / max(peak, 1e-9) * 10 ** (rng.uniform(-30.0, -6.0) / 20)).astype(np.float32)
