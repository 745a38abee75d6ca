"""Where an answer is cut into phrases for speech: short first phrase, then whole sentences.

Speech can start as soon as the first phrase is complete, so the first one ends at a comma or
after its first few words, whichever comes first; later ones end at sentence punctuation (or a
comma once they grow long), as the published system does. A hard cap keeps a run without
punctuation from delaying speech forever.
"""

from __future__ import annotations

from dataclasses import dataclass

CLAUSE_END = tuple(",;:.?!")
SENTENCE_END = tuple(":.?!")


@dataclass(frozen=True)
class PhraseRule:
    min_tokens: int = 4  # never cut a phrase shorter than this (at punctuation)
    comma_after_tokens: int = 20  # from this length on, clause punctuation ends a phrase too
    max_tokens: int = 40  # cut here whatever the text
    first_words: int = 3  # the first phrase ends before its next word once it has this many (0: off)

    def __post_init__(self) -> None:
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"invalid phrase rule: {self}")
        if self.first_words < 0:
            raise ValueError(f"first_words must be >= 0, got {self.first_words}")


def ends_phrase(text: str, n_tokens: int, first: bool, rule: PhraseRule = PhraseRule()) -> bool:
    """Does the phrase whose text so far is `text` (`n_tokens` tokens) end after its last token?"""
    if n_tokens >= rule.max_tokens:
        return True
    if n_tokens < rule.min_tokens:
        return False
    if text.endswith("\n"):
        return True
    stripped = text.rstrip(" ")
    ends = CLAUSE_END if first or n_tokens >= rule.comma_after_tokens else SENTENCE_END
    if not stripped.endswith(ends):
        return False
    # "3." is a list number or a decimal point still being written, not the end of a sentence.
    return not (stripped.endswith(".") and len(stripped) > 1 and stripped[-2].isdigit())


def ends_first_phrase_before(previous: str, piece: str, rule: PhraseRule = PhraseRule()) -> bool:
    """Does the first phrase, whose text so far is `previous`, end before a token whose text is
    `piece`? Yes when that token starts a new word and the phrase already has `first_words`."""
    return rule.first_words > 0 and piece[:1].isspace() and len(previous.split()) >= rule.first_words


def phrase_cut(text: str, n_tokens: int, first: bool, piece: str, rule: PhraseRule = PhraseRule()) -> int | None:
    """After a token whose text is `piece`, where the phrase whose text so far is `text` (`n_tokens`
    tokens, that one included) ends: 0 after that token, 1 before it (it opens the next phrase),
    None not yet. The one rule of the turn engine and of the decoder's training answers."""
    if ends_phrase(text, n_tokens, first, rule):
        return 0
    if first and ends_first_phrase_before(text[:len(text) - len(piece)], piece, rule):
        return 1
    return None
