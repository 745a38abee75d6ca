"""Speech manifests: JSONL, one `{"audio": "path.wav", "text": "reference words"}` a line.

Every problem is found before any audio is processed and reported as one line naming the file
and line number, so a long evaluation never dies at utterance 900 over a typo at line 3.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from freeze_omni.errors import FreezeOmniError
from freeze_omni.eval.metrics import ErrorRates, rates_by_group


@dataclass(frozen=True)
class SpeechItem:
    audio: Path  # resolved: relative paths are relative to the manifest's folder
    text: str
    line: int
    audio_as_written: str
    extra: dict[str, Any] = field(default_factory=dict)  # optional keys: voice, split, duration...


def read_speech_manifest(path: str | Path, limit: int | None = None) -> list[SpeechItem]:
    """Parse and check a speech manifest; `limit` keeps only its first utterances."""
    path = Path(path)
    if not path.is_file():
        raise FreezeOmniError(f"{path}: no such manifest")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise FreezeOmniError(f"{path}: cannot read manifest ({err})") from None
    items: list[SpeechItem] = []
    for number, line in enumerate(lines, start=1):
        if limit is not None and len(items) >= limit:
            break
        if line.strip():
            items.append(_parse_line(path, number, line))
    if not items:
        raise FreezeOmniError(f"{path}: manifest holds no utterances")
    return items


T = TypeVar("T")


def evenly_spaced(items: Sequence[T], n: int | None) -> list[T]:
    """`n` items spread evenly over `items` (all of them when `n` is None or not smaller). The
    corpus manifests are grouped by kind, so their first lines are not a fair sample: the first
    60 test utterances are all questions, mostly about capitals."""
    if n is None or n >= len(items):
        return list(items)
    if n < 1:
        raise ValueError(f"cannot pick {n} items")
    return [items[i * len(items) // n] for i in range(n)]


def _parse_line(path: Path, number: int, line: str) -> SpeechItem:
    where = f"{path}:{number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise FreezeOmniError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(record, dict):
        raise FreezeOmniError(f"{where}: expected a JSON object with 'audio' and 'text'")
    missing = [key for key in ("audio", "text") if key not in record]
    if missing:
        raise FreezeOmniError(f"{where}: missing key {' and '.join(repr(k) for k in missing)}")
    audio, text = record.pop("audio"), record.pop("text")
    if not isinstance(audio, str) or not audio:
        raise FreezeOmniError(f"{where}: 'audio' must be a non-empty path string")
    if not isinstance(text, str):
        raise FreezeOmniError(f"{where}: 'text' must be a string")
    resolved = Path(audio) if Path(audio).is_absolute() else path.parent / audio
    if not resolved.is_file():
        raise FreezeOmniError(f"{where}: audio file {resolved} not found")
    return SpeechItem(audio=resolved, text=text, line=number, audio_as_written=audio, extra=record)


def by_voice(items: Sequence[SpeechItem], rates: ErrorRates) -> dict[str, list[dict]]:
    """`{"by_voice": rows}`, WER/CER per voice, when every item names its voice (corpus manifests
    do); else {}. A split mixes voices of very different difficulty, so its one figure hides
    which voices fail."""
    voices = [item.extra.get("voice") for item in items]
    if not items or any(not isinstance(voice, str) for voice in voices):
        return {}
    return {"by_voice": rates_by_group(voices, rates)}
