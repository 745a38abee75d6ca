"""One report shape for every `eval` and `bench` command: JSON on stdout, Markdown on request.

With `--json` exactly one JSON object goes to stdout (logs go to stderr); without it a short
human-readable summary. `--report FILE.md` also writes the figures as Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--report", type=Path, metavar="FILE.md", help="also write a Markdown report")


def emit(result: dict[str, Any], args: argparse.Namespace, title: str) -> None:
    """Print `result` as JSON or as lines, and write the Markdown report if asked."""
    if args.json:
        print(json.dumps(result, default=_jsonable))
    else:
        for key, value in result.items():
            if not isinstance(value, list):
                print(f"{key}: {_format(value)}")
    if args.report:
        write_markdown(result, args.report, title)


def write_markdown(result: dict[str, Any], path: Path, title: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", "| figure | value |", "| --- | --- |"]
    lines += [f"| {key} | {_format(value)} |" for key, value in result.items() if not isinstance(value, list)]
    for key, value in result.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            columns = list(value[0])
            lines += ["", f"## {key}", "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
            lines += ["| " + " | ".join(_format(row.get(c)).replace("|", "\\|") for c in columns) + " |" for row in value]
    path.write_text("\n".join(lines) + "\n")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_format(v)}" for k, v in value.items())
    return str(value)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
