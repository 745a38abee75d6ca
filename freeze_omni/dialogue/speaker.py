"""Speech output behind one small interface, so the turn engine works before the speech decoder exists.

The engine hands the speaker one phrase at a time (its text, token ids and the LLM hidden state
of each token, which the NAR prefix decoder reads) and pulls PCM packets from the returned
iterator one at a time, so a caller can interleave packet synthesis with listening and token
generation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from freeze_omni.audio import SAMPLE_RATE


@dataclass(frozen=True)
class Phrase:
    text: str  # the phrase's text as shown to the user
    token_ids: list[int]  # the LLM tokens of this phrase
    hidden: torch.Tensor = field(repr=False)  # [len(token_ids), llm hidden]: each token's own position
    index: int  # 0 for an answer's first phrase (decoders may start it with a shorter packet)


class Speaker(Protocol):
    sample_rate: int

    def speak(self, phrase: Phrase) -> Iterator[np.ndarray]:
        """PCM packets (float32 mono at `sample_rate`) of one phrase, produced lazily. An empty
        packet is a slice of synthesis with no audio ready yet: the engine takes one packet per
        unit of answer work, so slices keep each unit short."""
        ...


class TextOnlySpeaker:
    """No audio: the answer is text only (each phrase counts as said when it is shown)."""

    sample_rate = SAMPLE_RATE

    def speak(self, phrase: Phrase) -> Iterator[np.ndarray]:
        return iter(())
