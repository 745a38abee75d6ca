"""Clean single English sentences from the Debian `fortunes` quotations.

Fortunes hold jokes, code, verse and dialogue; only sentences a voice reads unambiguously are
kept (3-25 words, ordinary punctuation, no acronyms or digits-as-symbols after normalisation).
The offensive collection (an `off/` folder) is never read.
"""

from __future__ import annotations

import re
from pathlib import Path

from freeze_omni.data.normalize import normalize_text

FORTUNES_DIR = Path("/usr/share/games/fortunes")
MIN_WORDS, MAX_WORDS = 3, 25
_SKIP_FILES = {"art", "ascii-art", "perl", "linux", "linuxcookie", "computers", "debian", "translate-me"}
_ATTRIBUTION = re.compile(r"^\s*(--|-- |\u2014|~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def fortune_files(root: Path = FORTUNES_DIR) -> list[Path]:
    """Quotation files directly in `root`: no `.dat`/`.u8` indexes, no `off/`, no code or art."""
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir()
        if p.is_file() and not p.suffix and p.name not in _SKIP_FILES
    )


def _entries(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [e for e in re.split(r"^%\s*$", text, flags=re.MULTILINE) if e.strip()]


def _is_clean(sentence: str) -> bool:
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    if re.search(r"\b[A-Z]{2,}", sentence):  # acronyms and shouting: voices disagree on them
        return False
    if re.search(r"[.!?] |\w\.\w", sentence):  # two sentences the splitter missed, or "alt.net"
        return False
    return sentence[0].isupper()


def entry_sentences(entry: str) -> list[str]:
    """Clean, normalised sentences of one fortune (attribution and dialogue lines dropped)."""
    lines = [line for line in entry.splitlines() if not _ATTRIBUTION.match(line)]
    if any(re.match(r"^\s*[A-Z][\w .]{0,20}:", line) for line in lines):
        return []  # dialogue ("Q: ...", "Bob: ...") reads badly out of context
    body = " ".join(line.strip() for line in lines)
    sentences = []
    for piece in _SENTENCE_END.split(body):
        if ":" in piece:
            continue  # "Murphy's Law: ..." headings read as run-on sentences
        sentence = normalize_text(piece)
        if sentence and _is_clean(sentence):
            sentences.append(sentence)
    return sentences


def fortune_sentences(root: Path = FORTUNES_DIR) -> list[str]:
    """All clean sentences, deduplicated, in a stable order; [] if `fortunes` is absent."""
    seen: dict[str, None] = {}
    for path in fortune_files(root):
        for entry in _entries(path):
            for sentence in entry_sentences(entry):
                seen.setdefault(sentence)
    return list(seen)
