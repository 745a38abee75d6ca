"""CTC over characters: the target alphabet, the output layer and greedy decoding.

Characters (not subwords) because input stage 1 only has to make the encoder streaming and
phonetically sharp; the LLM does the spelling in stage 2. Targets are the transcript as spoken
words: lower case, numbers written out, only letters, apostrophes and spaces.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from freeze_omni.data.normalize import expand_numbers

BLANK = 0
ALPHABET = " '" + "abcdefghijklmnopqrstuvwxyz"  # ids 1.. in this order; 0 is the CTC blank


def ctc_text(text: str) -> str:
    """The form of a transcript that CTC targets and CTC output share."""
    text = expand_numbers(text).lower().replace("-", " ")
    text = re.sub(r"[^a-z' ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def encode_text(text: str) -> list[int]:
    return [ALPHABET.index(c) + 1 for c in ctc_text(text)]


def decode_ids(ids: list[int]) -> str:
    return "".join(ALPHABET[i - 1] for i in ids if i != BLANK).strip()


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """[b, t, vocab] -> best path per row, repeats merged and blanks removed."""
    best = log_probs.argmax(-1)
    texts = []
    for row, length in zip(best, lengths.tolist()):
        path = row[:length].tolist()
        merged = [token for i, token in enumerate(path) if token != BLANK and (i == 0 or token != path[i - 1])]
        texts.append(re.sub(r"\s+", " ", decode_ids(merged)))
    return texts


class CTCHead(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, len(ALPHABET) + 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """[b, t, dim] -> [b, t, vocab] log-probabilities."""
        return self.proj(frames).log_softmax(-1)
