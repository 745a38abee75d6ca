"""Text normalisation for TTS: every corpus text is written as the words a voice actually says.

The transcript of an utterance must match its audio word for word, or ASR training learns noise:
"1984" read as "nineteen eighty four" must also be written that way. Texts that cannot be made
unambiguous (URLs, code, stray symbols) are rejected rather than guessed.
"""

from __future__ import annotations

import re
import unicodedata

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_EXCEPTIONS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}
_ABBREVIATIONS = {"Mr.": "Mister", "Mrs.": "Missus", "Dr.": "Doctor", "Ms.": "Miz", "vs.": "versus"}
_TRANSLATE = str.maketrans({
    "\u2018": "'", "\u2019": "'", "`": "'", "\u201c": '"', "\u201d": '"',
    "\u2013": ", ", "\u2014": ", ", "\u2026": "...", ";": ",", ":": ",",
})
_ALLOWED = re.compile(r"[A-Za-z ',.?!-]*")


def number_to_words(n: int) -> str:
    """Cardinal in American English without "and" or hyphens: 342 -> "three hundred forty two"."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (" " + _ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + (" " + number_to_words(rest) if rest else "")
    for scale, name in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            return number_to_words(high) + " " + name + (" " + number_to_words(rest) if rest else "")
    raise ValueError(f"number too large: {n}")


def ordinal_words(n: int) -> str:
    """21 -> "twenty first"."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_EXCEPTIONS:
        words[-1] = _ORDINAL_EXCEPTIONS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year_words(year: int) -> str:
    """Years as people say them: 1984 -> "nineteen eighty four", 1905 -> "nineteen oh five"."""
    if year < 1000 or year >= 10000 or 2000 <= year < 2010:
        return number_to_words(year)
    high, low = divmod(year, 100)
    if low == 0:
        return number_to_words(high) + " hundred"
    return number_to_words(high) + (" oh " if low < 10 else " ") + number_to_words(low)


def _expand_number(match: re.Match[str]) -> str:
    whole, decimals, suffix = match.group(1).replace(",", ""), match.group(2), match.group(3)
    value = int(whole)
    if suffix:
        return ordinal_words(value)
    if decimals:
        return number_to_words(value) + " point " + " ".join(_ONES[int(d)] for d in decimals)
    if "," not in match.group(1) and len(whole) == 4 and 1100 <= value < 2100:
        return year_words(value)
    return number_to_words(value)


def expand_numbers(text: str) -> str:
    """Write every number in words: ordinals (21st), decimals (3.5), years (1984), cardinals."""
    text = re.sub(r"\$(\d[\d,]*)", r"\1 dollars", text)
    text = re.sub(r"(\d)\s*%", r"\1 percent", text)
    pattern = r"\b(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th)?\b"
    return re.sub(pattern, _expand_number, text)


def normalize_text(raw: str) -> str | None:
    """Clean text for a TTS voice, or None if it holds anything a voice would read ambiguously.

    Keeps letters, apostrophes, hyphens and sentence punctuation (. , ? !); the result starts with
    a capital letter and ends with punctuation.
    """
    text = unicodedata.normalize("NFKC", raw).translate(_TRANSLATE)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    if re.search(r"https?|www\.|@|\.com\b", text):
        return None
    for short, long in _ABBREVIATIONS.items():
        text = text.replace(short, long)
    text = expand_numbers(text.replace("&", " and "))
    text = re.sub(r"\s*--+\s*|\s+-\s+", ", ", text)
    text = re.sub(r'["()]', "", text)
    text = re.sub(r"\.{2,}", ",", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.?!])", r"\1", text)
    text = re.sub(r"([,.?!])(?:\s*[,.?!])+", r"\1", text)  # ", ." -> ","
    text = re.sub(r"^[\s,.?!'-]+", "", text)
    if not text or not _ALLOWED.fullmatch(text) or not re.search(r"[A-Za-z]", text):
        return None
    if text[-1] == ",":
        text = text[:-1]
    if text[-1] not in ".?!":
        text += "."
    return text[0].upper() + text[1:]
