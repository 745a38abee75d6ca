"""Word and character error rates after Whisper-style English normalisation.

An ASR writes "23", "it's" and "colour" where a reference says "twenty-three", "it is" and
"color"; counting those as errors would measure spelling, not intelligibility. Both sides go
through the same normaliser (OpenAI Whisper's English one: numbers to digits, contractions,
British/American spelling, punctuation and fillers dropped), plus a few rules of our own for
numbers it writes in more than one way (times, dates, digit strings), before jiwer aligns them.

Rates are corpus-level: total edits over total reference words (or characters), so a long
utterance weighs more than a short one, as in every published WER.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

# Whisper's normaliser leaves these pairs different although they say the same thing.
_BEFORE = [
    (re.compile(r"\ban? (hundred|thousand|million|billion)\b", re.IGNORECASE), r"one \1"),
    # It builds ordinals as cardinal + "th", so it knows "nineth" but leaves "ninth" a word.
    (re.compile(r"\bninth\b", re.IGNORECASE), "nineth"),
    # Clock times: "2:15" as "215", the form it gives "two fifteen".
    (re.compile(r"\b(\d{1,2}):([0-5]\d)\b"), r"\1\2"),
]
_AFTER = [
    (re.compile(r"\bokay\b"), "ok"),
    (re.compile(r"\bcannot\b"), "can not"),
    # Whisper writes "two fifteen" as "2.15" as well as "2:15".
    (re.compile(r"\b(\d{1,2})\.([0-5]\d)\b"), r"\1\2"),
    # Dates: "August sixth" comes back as "August 6" as well as "August 6th".
    (re.compile(r"\b(\d+)(?:st|nd|rd|th)\b"), r"\1"),
    # Digits said one by one: "391 5004" and "3915004" are the same phone number.
    (re.compile(r"(?<=\d) (?=\d)"), ""),
]
_WHISPER = EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Lowercase, digits for numbers, expanded contractions, US spelling, no punctuation."""
    for pattern, replacement in _BEFORE:
        text = pattern.sub(replacement, text)
    text = _WHISPER(text)
    for pattern, replacement in _AFTER:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def rate(edits: int, length: int) -> float:
    """Edits per reference unit. An empty reference has nothing to get right, so every inserted
    word counts as one error against a floor of one (0.0 when the hypothesis is empty too);
    jiwer 4 uses the same convention."""
    return edits / max(length, 1)


@dataclass(frozen=True)
class UtteranceErrors:
    """Alignment counts for one pair of normalised texts."""

    reference: str
    hypothesis: str
    words: int
    substitutions: int
    deletions: int
    insertions: int
    chars: int
    char_edits: int

    @property
    def word_edits(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return rate(self.word_edits, self.words)

    @property
    def cer(self) -> float:
        return rate(self.char_edits, self.chars)


@dataclass(frozen=True)
class ErrorRates:
    """Corpus-level rates (total edits / total reference units) plus every utterance's counts."""

    wer: float
    cer: float
    n: int
    words: int
    substitutions: int
    deletions: int
    insertions: int
    chars: int
    char_edits: int
    utterances: list[UtteranceErrors]


def utterance_errors(reference: str, hypothesis: str, normalise: bool = True) -> UtteranceErrors:
    """Align one reference with one hypothesis (normalised first unless told otherwise)."""
    ref = normalize(reference) if normalise else " ".join(reference.split())
    hyp = normalize(hypothesis) if normalise else " ".join(hypothesis.split())
    if not ref:
        # jiwer cannot align against nothing; every hypothesis word/character is an insertion.
        return UtteranceErrors(ref, hyp, 0, 0, 0, len(hyp.split()), 0, len(hyp))
    words = jiwer.process_words(ref, hyp)
    chars = jiwer.process_characters(ref, hyp)
    return UtteranceErrors(
        reference=ref,
        hypothesis=hyp,
        words=len(ref.split()),
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        chars=len(ref),
        char_edits=chars.substitutions + chars.deletions + chars.insertions,
    )


def error_rates(references: Sequence[str], hypotheses: Sequence[str], normalise: bool = True) -> ErrorRates:
    """WER and CER of `hypotheses` against `references`, paired by position."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    return pooled([utterance_errors(r, h, normalise) for r, h in zip(references, hypotheses)])


def pooled(utts: list[UtteranceErrors]) -> ErrorRates:
    """Corpus rates of aligned utterances: their edits summed over their reference lengths."""
    words = sum(u.words for u in utts)
    chars = sum(u.chars for u in utts)
    return ErrorRates(
        wer=rate(sum(u.word_edits for u in utts), words),
        cer=rate(sum(u.char_edits for u in utts), chars),
        n=len(utts),
        words=words,
        substitutions=sum(u.substitutions for u in utts),
        deletions=sum(u.deletions for u in utts),
        insertions=sum(u.insertions for u in utts),
        chars=chars,
        char_edits=sum(u.char_edits for u in utts),
        utterances=utts,
    )


def rates_by_group(groups: Sequence[str], rates: ErrorRates, name: str = "voice") -> list[dict]:
    """Corpus WER/CER within each group of utterances (e.g. each voice), from the utterance counts
    of `rates` paired with `groups` by position; one row per group, sorted by group."""
    if len(groups) != len(rates.utterances):
        raise ValueError(f"{len(groups)} groups but {len(rates.utterances)} utterances")
    members: dict[str, list[UtteranceErrors]] = {}
    for group, utt in zip(groups, rates.utterances):
        members.setdefault(group, []).append(utt)
    rows = []
    for group, utts in sorted(members.items()):
        group_rates = pooled(utts)
        rows.append({name: group, "n": group_rates.n, "wer": group_rates.wer, "cer": group_rates.cer})
    return rows
