"""Plain files in a run folder: JSON, CSV and Markdown tables."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def to_jsonable(obj: Any) -> Any:
    """Return ``obj`` with every value JSON can write: the one JSON cleaner of the package.

    Mappings become dicts with string keys, tuples and lists become lists, NaN and infinities
    become ``None``, zero-dimensional NumPy/torch values become Python numbers (or bools),
    arrays and tensors with dimensions become nested lists, and paths become strings.
    Anything else is returned unchanged.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return to_jsonable(obj.item())
    if hasattr(obj, "tolist") and getattr(obj, "ndim", 0) > 0:
        return to_jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON (see :func:`to_jsonable`) atomically; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def write_history_csv(history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write history rows as CSV and return the path.

    Columns appear in the order keys first occur; ``None`` is written as an empty cell.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for row in history:
            w.writerow({k: ("" if row.get(k) is None else row[k]) for k in keys})
    return path


def format_value(value: Any) -> str:
    """Return ``value`` as table text: floats to 4 significant digits (from 1e6 on: to 0.1), None empty."""
    value = to_jsonable(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 1e6 else f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Return a GitHub-flavoured Markdown table (cells through :func:`format_value`), newline-terminated."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(format_value(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
