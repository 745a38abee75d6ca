"""Trivia question/answer pairs from the Debian `bsdgames` quiz files.

Each quiz line is `field:field:...`; a field may hold `{optional}` parts, `a|b` alternatives and
`[a|b]` groups, so one line stands for several accepted spellings. The corpus only speaks the
question, but spoken-QA evaluation needs every accepted answer, so both sides are kept.
Questions are phrased from per-category templates (the quiz program itself only shows the field).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from freeze_omni.data.normalize import number_to_words, ordinal_words, year_words

QUIZ_DIR = Path("/usr/share/games/bsdgames/quiz")
_MAX_SPELLINGS = 32
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8}


@dataclass(frozen=True)
class QAPair:
    question: str
    answers: tuple[str, ...]  # every accepted spelling, fullest first
    category: str


# --- the quiz field syntax -------------------------------------------------------------------


def expand_field(field: str) -> list[str]:
    """All spellings a field accepts (up to 32), the fullest (every optional part included) first."""
    alternatives, end = _parse_alternatives(field, 0)
    if end != len(field):
        raise ValueError(f"unbalanced brackets in quiz field {field!r}")
    seen: dict[str, None] = {}
    for spelling in alternatives:
        cleaned = re.sub(r"\s+", " ", spelling).strip()
        if cleaned:
            seen.setdefault(cleaned)
    return list(seen)[:_MAX_SPELLINGS]


def _parse_alternatives(text: str, pos: int) -> tuple[list[str], int]:
    """alternatives := sequence ('|' sequence)*; stops at a closing bracket or the end."""
    spellings: list[str] = []
    while True:
        sequence, pos = _parse_sequence(text, pos)
        spellings += sequence
        if pos < len(text) and text[pos] == "|":
            pos += 1
            continue
        return spellings[: _MAX_SPELLINGS * 4], pos


def _parse_sequence(text: str, pos: int) -> tuple[list[str], int]:
    """sequence := (literal | '{' alternatives '}' | '[' alternatives ']')*"""
    parts: list[list[str]] = []
    literal = ""
    while pos < len(text) and text[pos] not in "|}]":
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            literal, pos = literal + text[pos + 1], pos + 2
        elif char in "{[":
            close = "}" if char == "{" else "]"
            inner, pos = _parse_alternatives(text, pos + 1)
            if pos >= len(text) or text[pos] != close:
                raise ValueError(f"unbalanced brackets in quiz field {text!r}")
            pos += 1
            parts += [[literal], inner + [""] if char == "{" else inner]
            literal = ""
        else:
            literal, pos = literal + char, pos + 1
    parts.append([literal])
    combos = itertools.islice(itertools.product(*parts), _MAX_SPELLINGS * 4)
    return ["".join(combo) for combo in combos], pos


def split_fields(line: str) -> list[str]:
    """Split a quiz line at top-level, unescaped colons."""
    fields, depth, current, i = [], 0, "", 0
    while i < len(line):
        char = line[i]
        if char == "\\" and i + 1 < len(line):
            current, i = current + line[i : i + 2], i + 2
            continue
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        if char == ":" and depth == 0:
            fields.append(current)
            current = ""
        else:
            current += char
        i += 1
    return fields + [current]


def read_quiz_file(path: Path) -> list[list[list[str]]]:
    """Lines of a quiz file (continuations joined) -> per line, per field, its spellings."""
    text = path.read_text(encoding="latin-1").replace("\\\n", "")
    text = re.sub(r"(?:[\\^'`~\"]|\xc2\xb0)\x08", "", text)  # overstruck accents: "C^<BS>ote" -> "Cote"
    rows = []
    for line in text.splitlines():
        if line.strip():
            try:
                rows.append([expand_field(f) for f in split_fields(line)])
            except ValueError:
                continue  # a malformed line costs one question, not the whole category
    return rows


# --- phrasing questions from the fields ------------------------------------------------------


def _pick(options: list[str], key: str) -> str:
    """A stable choice among phrasings, so the same quiz line always gives the same question."""
    return options[int(hashlib.sha1(key.encode()).hexdigest(), 16) % len(options)]


def _regnal(name: str) -> str:
    """"Henry VIII" -> "Henry the eighth": TTS voices read "VIII" as letters."""
    words = name.split()
    if len(words) > 1 and words[-1] in _ROMAN:
        words[-1] = "the " + ordinal_words(_ROMAN[words[-1]])
    return " ".join(words)


def _fullest_word_form(spellings: list[str]) -> str:
    """The fullest spelling that is not a bare number or roman numeral."""
    for spelling in spellings:
        if not re.fullmatch(r"[\dIVX .]+", spelling):
            return spelling
    return spellings[0]


_CAPITAL_TEMPLATES = [
    "What is the capital of {}?", "Which city is the capital of {}?",
    "Do you know the capital of {}?", "What's the capital city of {}?",
]


def _capitals(row: list[list[str]]) -> list[tuple[str, list[str]]]:
    place = row[0][0]
    return [(_pick(_CAPITAL_TEMPLATES, place).format(place), row[1])]


def _state(row: list[list[str]]) -> list[tuple[str, list[str]]]:
    state = row[0][0]
    return [
        (_pick(["What is the capital of {}?", "Which city is the capital of the state of {}?"], state)
         .format(state), row[1]),
        (f"What is the state flower of {state}?", row[3]),
    ]


def _elements(row: list[list[str]]) -> list[tuple[str, list[str]]]:
    symbol, number, element = row[0], row[1][0], row[3]
    words = number_to_words(int(number))
    return [
        (f"What is the chemical symbol for {element[0].lower()}?", symbol),
        (f"Which element has the atomic number {words}?", element),
        (f"What is the atomic number of {element[0].lower()}?", [number, words]),
    ]


def _presidents(row: list[list[str]]) -> list[tuple[str, list[str]]]:
    president = row[0][0]
    pairs = [(f"Who was vice president under {president}?", row[2])]
    if len(row) > 3:
        pairs.append((_pick(["Who was president after {}?", "Who succeeded {} as president?"],
                            president).format(president), row[3]))
    start = re.match(r"\d{4}", row[1][0])
    if start:
        pairs.append((f"Which president took office in {year_words(int(start.group()))}?", row[0]))
    return pairs


def _sovereigns(row: list[list[str]]) -> list[tuple[str, list[str]]]:
    name = _regnal(_fullest_word_form(row[0]))
    pairs = []
    if len(row) > 2:
        successor = _regnal(_fullest_word_form(row[2]))
        pairs.append((f"Who succeeded {name} on the English throne?", [successor, *row[2]]))
    century = re.match(r"\d+", row[1][0])
    if century:
        pairs.append((f"In which century did {name} begin to reign?",
                      [ordinal_words(int(century.group())) + " century", *row[1]]))
    return pairs


def _simple(*templates: str, lower: bool = False) -> Callable[[list[list[str]]], list[tuple[str, list[str]]]]:
    def build(row: list[list[str]]) -> list[tuple[str, list[str]]]:
        subject = row[0][0].lower() if lower else row[0][0]
        return [(_pick(list(templates), subject).format(subject), row[1])]

    return build


def _babies(row: list[list[str]]) -> list[tuple[str, list[str]]]:
    return [(f"What do you call a baby {adult}?", row[0]) for adult in row[1] if " " not in adult]


def _multiplication(row: list[list[str]]) -> list[tuple[str, list[str]]]:
    a, b = (int(x) for x in row[0][0].split(" x "))
    answer = row[1][0]
    return [(f"What is {number_to_words(a)} times {number_to_words(b)}?",
             [answer, number_to_words(int(answer))])]


def _arithmetic(row: list[list[str]]) -> list[tuple[str, list[str]]]:
    match = re.fullmatch(r"(\d+) - (\d+)(?: =)? \.\.\.", row[0][0])
    if not match:
        return []  # "63 - ... = 55" has no natural spoken form; keep the direct ones
    a, b = (number_to_words(int(x)) for x in match.groups())
    answer = row[1][0]
    return [(f"What is {a} minus {b}?", [answer, number_to_words(int(answer))])]


def _quoted(line: str) -> str:
    return line.rstrip(" ,.;:!?")


def _shakespeare(row: list[list[str]]) -> list[tuple[str, list[str]]]:
    line = _quoted(row[0][0])
    return [(f"Which play has the line, {line}?", row[2]),
            (f"Which character says, {line}?", row[3])]


def _poetry(row: list[list[str]]) -> list[tuple[str, list[str]]]:
    line, poem = _quoted(row[0][0]), row[2][0]
    return [(f"Who wrote the line, {line}?", row[3]),
            (f"Which poem begins with the line, {line}?", row[2]),
            (f"Who is the author of the poem {poem}?", row[3])]


CATEGORIES: dict[str, Callable[[list[list[str]]], list[tuple[str, list[str]]]]] = {
    "africa": _capitals, "america": _capitals, "asia": _capitals, "europe": _capitals,
    "province": _capitals,
    "midearth": _simple("In Middle Earth, what is the capital of {}?"),
    "state": _state,
    "elements": _elements,
    "pres": _presidents,
    "sov": _sovereigns,
    "babies": _babies,
    "collectives": _simple("What do you call a group of {}?", "What is a group of {} called?", lower=True),
    "sexes": _simple("What is the female form of the word {}?", lower=True),
    "chinese": _simple("In the Chinese zodiac, which year comes after the year of the {}?"),
    "inca": _simple("Which Inca ruler came after {}?"),
    "latin": _simple("What does the Latin word {} mean?"),
    "flowers": _simple("In the language of flowers, what does the {} stand for?", lower=True),
    "murders": _simple("Who killed {}?"),
    "posneg": _simple("What is the opposite of {}?"),
    "mult": _multiplication,
    "arith": _arithmetic,
    "bard": _shakespeare,
    "poetry": _poetry,
}


def quiz_pairs(quiz_dir: Path = QUIZ_DIR) -> list[QAPair]:
    """Every (question, answers) pair the phrased categories yield; [] if bsdgames is absent.

    Questions are raw text (not yet normalised for TTS); the order is stable.
    """
    pairs: list[QAPair] = []
    for category, build in CATEGORIES.items():
        path = quiz_dir / category
        if not path.is_file():
            continue
        for row in read_quiz_file(path):
            try:
                built = build(row)
            except (IndexError, ValueError):
                continue  # a line with missing fields
            for question, answers in built:
                if answers:
                    pairs.append(QAPair(re.sub(r"\s+", " ", question), tuple(answers), category))
    return pairs
