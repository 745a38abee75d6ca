"""Stage-3 data: the frozen LLM answering corpus questions, each answer phrase with its hidden
states and, for every Piper sentence in it, the voice's durations and codec tokens.

Questions are the bsdgames quiz questions of one split (train for learning, dev for held-out
measurement). Shards of `SHARD` questions are cached under the data folder (torch files),
keyed by the questions, the LLM, the seed and the codec, so an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from freeze_omni.codec.model import Codec
from freeze_omni.decoder.dataset import codec_key
from freeze_omni.decoder.phonemes import shared_phonemizer
from freeze_omni.decoder.targets import PiperTargets

SHARD = 25


@dataclass
class PrefixItem:
    """One Piper sentence of an answer phrase: what the decoder reads and must say."""

    text: str  # the whole phrase
    hidden: torch.Tensor  # [L, llm hidden] float16, the phrase's LLM hidden states
    ids: np.ndarray
    durations: np.ndarray
    tokens: np.ndarray


def quiz_questions(split: str, count: int, seed: int = 0) -> list[str]:
    from freeze_omni.data.plan import text_split
    from freeze_omni.data.quiz import quiz_pairs

    questions = [p.question for p in quiz_pairs() if text_split(p.question) == split]
    random.Random(f"prefix-{split}-{seed}").shuffle(questions)
    return questions[:count]


def build_prefix_items(questions: list[str], folder: Path, llm, codec: Codec, seed: int = 0,
                       log: Callable[[str], None] | None = None) -> list[PrefixItem]:
    from freeze_omni.codec.train import piper_scales
    from freeze_omni.decoder.answers import answer_phrases

    folder.mkdir(parents=True, exist_ok=True)
    targets: PiperTargets | None = None
    items: list[PrefixItem] = []
    for first in range(0, len(questions), SHARD):
        chunk = questions[first:first + SHARD]
        key = hashlib.sha1(("\n".join(chunk) + f"|{llm.name}|{seed}|{codec_key(codec)}").encode()).hexdigest()[:16]
        path = folder / f"prefix-{first // SHARD:04d}-{key}.pt"
        if not path.is_file():
            targets = targets or PiperTargets(codec)
            rows = []
            for question in chunk:
                for phrase in answer_phrases(llm, question):
                    for sentence in shared_phonemizer().sentences(phrase.text):
                        t = targets(sentence.ids, piper_scales(phrase.text, seed))
                        rows.append(PrefixItem(phrase.text, phrase.hidden.half(), t.ids, t.durations, t.tokens))
            tmp = path.with_suffix(".tmp")
            torch.save([vars(r) for r in rows], tmp)
            tmp.replace(path)
            if log:
                log(f"prefix data: {first + len(chunk)}/{len(questions)} questions ({folder.name})")
        items += [PrefixItem(**row) for row in torch.load(path, weights_only=False)]
    return items
