"""The answer's playout timeline on the input clock: what the user has heard by a given moment.

The user's microphone audio is the clock (it arrives in real time). A packet produced at time
`now` plays from max(now, end of the previous packet) for its duration. A phrase without audio
(text-only speaker) counts as said when its text was shown. Within a phrase, its tokens are
assumed evenly spread over its audio; a phrase still being synthesised counts the audio made so
far. This is what a barge-in keeps of an answer: the conversation remembers only what was heard.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PlayedPhrase:
    tokens: int
    shown_ms: float
    packets: list[tuple[float, float]] = field(default_factory=list)  # (start_ms, end_ms) of each packet
    complete: bool = False  # every packet has been produced

    def said_tokens(self, t_ms: float) -> int:
        if not self.packets:
            return self.tokens if self.complete and self.shown_ms <= t_ms else 0
        total = sum(end - start for start, end in self.packets)
        played = sum(max(0.0, min(t_ms, end) - start) for start, end in self.packets)
        return self.tokens if played >= total else int(self.tokens * played / total)

    @property
    def end_ms(self) -> float:
        return self.packets[-1][1] if self.packets else self.shown_ms


@dataclass
class Playout:
    phrases: list[PlayedPhrase] = field(default_factory=list)

    def add_phrase(self, tokens: int, now_ms: float) -> None:
        if self.phrases and not self.phrases[-1].complete:
            raise RuntimeError("the previous phrase is still being synthesised")
        self.phrases.append(PlayedPhrase(tokens, now_ms))

    def add_packet(self, num_samples: int, sample_rate: int, now_ms: float) -> None:
        start = max(now_ms, self.end_ms)
        self.phrases[-1].packets.append((start, start + 1000.0 * num_samples / sample_rate))

    def complete_phrase(self) -> None:
        self.phrases[-1].complete = True

    @property
    def end_ms(self) -> float:
        """When the last produced audio finishes playing (-inf before anything was produced)."""
        return max((p.end_ms for p in self.phrases), default=float("-inf"))

    @property
    def complete(self) -> bool:
        return all(p.complete for p in self.phrases)

    def said_tokens(self, t_ms: float) -> int:
        """How many of the answer's tokens the user had heard (or seen) at `t_ms`."""
        return sum(p.said_tokens(t_ms) for p in self.phrases)
