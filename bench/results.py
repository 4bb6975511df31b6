"""Printing benchmark figures and keeping them as JSON for comparison."""

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def report(name: str, rows: list[tuple[str, Any]]) -> None:
    """Prints `rows` as a table and writes them to bench/results/<name>.json."""
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{label:<{width}}  {shown}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(dict(rows), indent=2) + "\n")
