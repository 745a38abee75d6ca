"""The texts a corpus speaks: the default mix of sources, or the user's own text files.

Every text is normalised for TTS (written as the words a voice says) and distinct by its words,
so "Okay." and "okay?" count once and always land in the same split.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from freeze_omni.data import CorpusError, generate
from freeze_omni.data.fortunes import fortune_sentences
from freeze_omni.data.normalize import normalize_text
from freeze_omni.data.quiz import quiz_pairs

KINDS = ("statement", "question", "reply", "filler")


@dataclass(frozen=True)
class TextItem:
    text: str  # normalised: the words as spoken, with sentence punctuation
    kind: str  # one of KINDS
    source: str  # where it came from, e.g. "quiz:europe", "fortunes", "times", "file:my.txt"
    answers: tuple[str, ...] = ()  # accepted answers, for trivia questions


@dataclass(frozen=True)
class TextQuotas:
    """How many texts each source contributes to the default set (quiz and replies: all)."""

    fortunes: int = 3200
    questions: int = 1800
    statements: int = 700
    numbers: int = 350
    dates: int = 250
    times: int = 250
    names: int = 250


def text_key(text: str) -> str:
    """The words alone (lower case, no punctuation): identity of a text for dedup and splits."""
    return " ".join(re.findall(r"[a-z']+", text.lower().replace("-", " ")))


def kind_of(text: str) -> str:
    return "question" if text.endswith("?") else "statement"


def _items(texts: Iterable[str], source: str, kind: str | None = None,
           answers: tuple[str, ...] = ()) -> list[TextItem]:
    items = []
    for raw in texts:
        text = normalize_text(raw)
        if text:
            items.append(TextItem(text, kind or kind_of(text), source, answers))
    return items


def dedupe(items: Iterable[TextItem]) -> list[TextItem]:
    """First occurrence of each distinct text wins; order is kept."""
    seen: dict[str, TextItem] = {}
    for item in items:
        seen.setdefault(text_key(item.text), item)
    return list(seen.values())


def default_texts(seed: int = 0, quotas: TextQuotas = TextQuotas()) -> list[TextItem]:
    """The default mix: bsdgames trivia, fortunes sentences, and the project's generators.

    Deterministic for a seed; the Debian sources contribute nothing if they are not installed.
    """
    rng = random.Random(f"texts-{seed}")
    items = [
        item
        for pair in quiz_pairs()
        for item in _items([pair.question], f"quiz:{pair.category}", "question", pair.answers)
    ]
    fortunes = fortune_sentences()
    items += _items(rng.sample(fortunes, min(quotas.fortunes, len(fortunes))), "fortunes")
    items += _items(generate.from_templates("questions", rng, quotas.questions), "questions")
    items += _items(generate.from_templates("statements", rng, quotas.statements), "statements")
    items += _items(generate.number_sentences(rng, quotas.numbers), "numbers")
    items += _items(generate.date_sentences(rng, quotas.dates), "dates")
    items += _items(generate.time_sentences(rng, quotas.times), "times")
    items += _items(generate.name_sentences(rng, quotas.names), "names")
    for text, kind in generate.replies():
        items += _items([text], "replies", kind)
    return dedupe(items)


def read_text_files(paths: Sequence[Path]) -> list[TextItem]:
    """Plain text files, one sentence a line, normalised; raises CorpusError on unusable input."""
    items: list[TextItem] = []
    for path in paths:
        if not path.is_file():
            raise CorpusError(f"{path}: no such text file")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise CorpusError(f"{path}: cannot read text file ({err})") from None
        if not any(line.strip() for line in lines):
            raise CorpusError(f"{path}: text file is empty")
        found = _items((line for line in lines if line.strip()), f"file:{path.name}")
        if not found:
            raise CorpusError(f"{path}: no line is speakable text (after removing symbols and URLs)")
        items += found
    return dedupe(items)
