"""Corpus bookkeeping: the build journal, the per-split JSONL manifests and the summary.

Finished utterances are appended to `journal.jsonl` one line at a time, so an interrupted build
loses only the utterances in flight (a cut-off last line is ignored). The manifests
(`train.jsonl`, `dev.jsonl`, `test.jsonl`) are always rewritten whole from the journal and the
current plan, atomically, so they never disagree with the audio on disk.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from freeze_omni.data.plan import SPLITS, Utterance
from freeze_omni.paths import write_atomic

JOURNAL = "journal.jsonl"
SUMMARY = "corpus.json"
REQUIRED_FIELDS = ("audio", "text", "voice", "duration", "split")


def read_journal(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Records by utterance id; unreadable lines (a write cut off by a crash) are skipped."""
    path = out_dir / JOURNAL
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "id" in record:
            records[record["id"]] = record
    return records


class Journal:
    """Append-only log of finished utterances, flushed after every line."""

    def __init__(self, out_dir: Path) -> None:
        path = out_dir / JOURNAL
        needs_newline = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        self._file = open(path, "a", encoding="utf-8")
        if needs_newline:  # never glue a new record onto a line cut off by a crash
            self._file.write("\n")

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def completed(plan: Sequence[Utterance], records: dict[str, dict[str, Any]], out_dir: Path) -> dict[str, dict[str, Any]]:
    """Records of planned utterances whose audio file is really there."""
    return {
        u.id: records[u.id]
        for u in plan
        if u.id in records and (out_dir / records[u.id]["audio"]).is_file()
    }


def write_manifests(out_dir: Path, plan: Sequence[Utterance], done: dict[str, dict[str, Any]]) -> dict[str, int]:
    """One JSONL per split, in plan order, holding every finished utterance; returns counts."""
    lines: dict[str, list[str]] = {split: [] for split in SPLITS}
    for utterance in plan:
        record = done.get(utterance.id)
        if record is not None:
            lines[utterance.split].append(json.dumps(record, ensure_ascii=False))
    for split, rows in lines.items():
        write_atomic(out_dir / f"{split}.jsonl", "".join(row + "\n" for row in rows))
    return {split: len(rows) for split, rows in lines.items()}


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Hours, utterances, distinct texts and voices per split, and hours per voice."""
    empty = {"utterances": 0, "hours": 0.0, "texts": 0, "voices": {}}
    splits: dict[str, dict[str, Any]] = {split: dict(empty) for split in SPLITS}
    per_voice: dict[str, float] = defaultdict(float)
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[record["split"]].append(record)
        per_voice[record["voice"]] += record["duration"] / 3600
    for split, rows in grouped.items():
        voices: dict[str, float] = defaultdict(float)
        for row in rows:
            voices[row["voice"]] += row["duration"] / 3600
        splits[split] = {
            "utterances": len(rows),
            "hours": round(sum(r["duration"] for r in rows) / 3600, 3),
            "texts": len({r["text"] for r in rows}),
            "voices": {voice: round(h, 3) for voice, h in sorted(voices.items())},
        }
    return {
        "hours": round(sum(s["hours"] for s in splits.values()), 3),
        "utterances": sum(s["utterances"] for s in splits.values()),
        "distinct_texts": len({r["text"] for rows in grouped.values() for r in rows}),
        "splits": splits,
        "hours_per_voice": {voice: round(h, 3) for voice, h in sorted(per_voice.items())},
    }


def read_summary(out_dir: Path) -> dict[str, Any]:
    """The previous run's summary, or {} (none yet, or unreadable)."""
    try:
        summary = json.loads((out_dir / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return summary if isinstance(summary, dict) else {}


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    write_atomic(out_dir / SUMMARY, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
