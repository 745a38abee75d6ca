"""The answer's playout timeline on the input clock: what the user has heard by a given moment.

The user's microphone audio is the clock (it arrives in real time). A packet produced at time
`now` plays from max(now, end of the previous packet) for its duration. A phrase without audio
(text-only speaker) counts as said when its text was shown. Within a phrase, its tokens are
assumed evenly spread over its audio; a phrase still being synthesised counts the audio made so
far. This is what a barge-in keeps of an answer: the conversation remembers only what was heard.

Playback can pause (the user started talking over it): nothing plays from the pause on, and the
client drops the audio it had queued. On resume, that unplayed audio is sent again and the
timeline from the pause point moves to the resume time, so token accounting stays right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PlayedPacket:
    start_ms: float
    end_ms: float
    pcm: np.ndarray = field(repr=False)  # kept so that a pause can send back what was not heard
    sample_rate: int


@dataclass
class PlayedPhrase:
    tokens: int
    shown_ms: float
    packets: list[PlayedPacket] = field(default_factory=list)
    complete: bool = False  # every packet has been produced

    def said_tokens(self, t_ms: float) -> int:
        if not self.packets:
            return self.tokens if self.complete and self.shown_ms <= t_ms else 0
        total = sum(p.end_ms - p.start_ms for p in self.packets)
        played = sum(max(0.0, min(t_ms, p.end_ms) - p.start_ms) for p in self.packets)
        return self.tokens if played >= total else int(self.tokens * played / total)

    @property
    def end_ms(self) -> float:
        return self.packets[-1].end_ms if self.packets else self.shown_ms


@dataclass
class Playout:
    phrases: list[PlayedPhrase] = field(default_factory=list)
    paused_ms: float | None = None  # playback stopped here and has not resumed

    def add_phrase(self, tokens: int, now_ms: float) -> None:
        if self.phrases and not self.phrases[-1].complete:
            raise RuntimeError("the previous phrase is still being synthesised")
        self.phrases.append(PlayedPhrase(tokens, now_ms))

    def add_packet(self, pcm: np.ndarray, sample_rate: int, now_ms: float) -> None:
        if self.paused_ms is not None:
            raise RuntimeError("no packets while playback is paused")
        start = max(now_ms, self.end_ms)
        self.phrases[-1].packets.append(PlayedPacket(start, start + 1000.0 * pcm.size / sample_rate, pcm, sample_rate))

    def complete_phrase(self) -> None:
        self.phrases[-1].complete = True

    def pause(self, now_ms: float) -> int:
        """Stop playback at `now_ms`; returns how many produced samples had not been played."""
        if self.paused_ms is not None:
            raise RuntimeError("playback is already paused")
        self.paused_ms = now_ms
        return sum(_unplayed(p, now_ms).size for phrase in self.phrases for p in phrase.packets)

    def resume(self, now_ms: float) -> np.ndarray:
        """Play on from `now_ms`: returns the audio to send again (what was unplayed at the pause)."""
        if self.paused_ms is None:
            raise RuntimeError("playback is not paused")
        paused, shift = self.paused_ms, now_ms - self.paused_ms
        resent = []
        for phrase in self.phrases:
            packets = []
            for p in phrase.packets:
                rest = _unplayed(p, paused)
                if rest.size == 0:
                    packets.append(p)
                    continue
                if rest.size < p.pcm.size:  # played up to the pause: split it there
                    packets.append(PlayedPacket(p.start_ms, paused, p.pcm[:p.pcm.size - rest.size], p.sample_rate))
                    start = now_ms
                else:
                    start = p.start_ms + shift
                packets.append(PlayedPacket(start, start + 1000.0 * rest.size / p.sample_rate, rest, p.sample_rate))
                resent.append(rest)
            phrase.packets = packets
        self.paused_ms = None
        return np.concatenate(resent) if resent else np.zeros(0, np.float32)

    @property
    def end_ms(self) -> float:
        """When the last produced audio finishes playing (-inf before anything was produced)."""
        return max((p.end_ms for p in self.phrases), default=float("-inf"))

    @property
    def audio_end_ms(self) -> float:
        """When the last audio packet finishes playing (-inf before any; shown text does not count)."""
        return max((p.packets[-1].end_ms for p in self.phrases if p.packets), default=float("-inf"))

    @property
    def complete(self) -> bool:
        return all(p.complete for p in self.phrases)

    def said_tokens(self, t_ms: float) -> int:
        """How many of the answer's tokens the user had heard (or seen) at `t_ms`."""
        if self.paused_ms is not None:
            t_ms = min(t_ms, self.paused_ms)
        return sum(p.said_tokens(t_ms) for p in self.phrases)


def _unplayed(packet: PlayedPacket, t_ms: float) -> np.ndarray:
    """The samples of `packet` that play after `t_ms`."""
    if t_ms >= packet.end_ms:
        return packet.pcm[packet.pcm.size:]
    played = max(0, round((t_ms - packet.start_ms) * packet.sample_rate / 1000.0))
    return packet.pcm[played:]
