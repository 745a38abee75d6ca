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

import numpy as np


def percentiles(values: list[float]) -> dict[str, float | None]:
    """The `{"p50", "p95"}` shape of every latency figure in the reports (None when nothing was measured)."""
    if not values:
        return {"p50": None, "p95": None}
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}


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


def write_percentile_chart(path: Path, title: str, rows: dict[str, dict[str, float | None]], unit: str = "ms") -> None:
    """A dependency-free SVG bar chart: one row per stage, a bar to its p50 and a tick at its p95."""
    shown = {k: v for k, v in rows.items() if v.get("p50") is not None}
    top = max([v["p95"] or v["p50"] for v in shown.values()] + [1.0])
    width, left, bar, gap = 640, 190, 18, 10
    height = 50 + len(shown) * (bar + gap)
    scale = (width - left - 60) / top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><text x="10" y="20" font-size="14">{title}</text>']
    for i, (name, value) in enumerate(shown.items()):
        y = 40 + i * (bar + gap)
        p50, p95 = value["p50"], value["p95"] or value["p50"]
        parts.append(f'<text x="10" y="{y + 13}">{name}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{max(p50, 0) * scale:.1f}" height="{bar}" fill="#4a7fb5"/>')
        parts.append(f'<line x1="{left + p95 * scale:.1f}" x2="{left + p95 * scale:.1f}" y1="{y - 2}" y2="{y + bar + 2}" '
                     'stroke="#c0392b" stroke-width="2"/>')
        parts.append(f'<text x="{left + p95 * scale + 6:.1f}" y="{y + 13}">{p50:.0f} / {p95:.0f} {unit}</text>')
    parts.append(f'<text x="10" y="{height - 6}" fill="#555">bar: p50, red tick: p95</text></svg>')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n")
