"""One table of every committed reproduction: published figure beside ours, budget, time, hardware.

    python benchmarks/reproduce_summary.py [--results benchmarks/results/reproduce] [--json PATH]

Reads every ``table.json`` under ``--results`` (the folders ``pyro-gen reproduce`` wrote),
prints one markdown line per row that has a number of ours (done, or partial over seeds), and
writes the same as JSON (default ``RESULTS/summary.json``) and markdown (``RESULTS/summary.md``).
The README's table of reproductions is this command's output. Torch-free.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HEADER = "| table | row | published | ours | difference | budget | epochs | wall min | hardware | folder |"


def _num(value: Any, fmt: str = ".2f", signed: bool = False) -> str:
    if not isinstance(value, int | float):
        return "-"
    return format(value, ("+" if signed else "") + fmt)


def _hardware(entry: dict[str, Any]) -> str:
    hw = entry.get("hardware") or {}
    if not hw:
        return "-"
    cpus = hw.get("cpus")
    parts = [hw.get("gpu") or (f"{cpus}-core CPU" if cpus else "CPU")]
    threads = entry.get("threads") or hw.get("threads")
    if threads:
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    if hw.get("load"):
        parts.append(f"load {hw['load'][0]:.1f}")
    return ", ".join(parts)


def _minutes(entry: dict[str, Any]) -> float | None:
    for key in ("wall_seconds", "train_seconds"):
        if isinstance(entry.get(key), int | float):
            return entry[key] / 60
    return None


def summary_rows(results: Path) -> list[dict[str, Any]]:
    """Return one record per reproduced row under ``results`` (sorted by folder, then table order):
    table, folder, row label, published, ours (and ``ours_std`` over seeds), difference (ours -
    published, in the table's units), units, budget, epochs, wall minutes, hardware, status."""
    records = []
    for path in sorted(results.glob("*/table.json")):
        table = json.loads(path.read_text())
        for e in table.get("rows", []):
            if not isinstance(e.get("ours"), int | float):
                continue
            records.append(
                {
                    "table": table.get("name"),
                    "folder": path.parent.name,
                    "row": e.get("label"),
                    "published": e.get("published"),
                    "tag": e.get("tag"),
                    "ours": e.get("ours"),
                    "ours_std": e.get("ours_std"),
                    "difference": e.get("difference"),
                    "units": table.get("units"),
                    "budget": table.get("budget"),
                    "epochs": e.get("epochs"),
                    "wall_minutes": _minutes(e),
                    "hardware": _hardware(e),
                    "status": e.get("status"),
                }
            )
    return records


def render(records: list[dict[str, Any]]) -> str:
    """Return the markdown table of ``records`` (as :func:`summary_rows` returns them)."""
    lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    for r in records:
        ours = _num(r["ours"])
        if isinstance(r.get("ours_std"), int | float):
            ours += f" ± {r['ours_std']:.2f}"
        published = _num(r["published"]) + (f" {r['tag']}" if r.get("tag") and r["published"] else "")
        wall = r.get("wall_minutes")
        lines.append(
            "| "
            + " | ".join(
                [
                    r["table"],
                    r["row"],
                    published,
                    ours,
                    _num(r["difference"], signed=True),
                    r["budget"],
                    _num(r["epochs"], ".0f"),
                    "-" if wall is None else f"{wall:.0f}",
                    r["hardware"],
                    f"`{r['folder']}`",
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the summary table and write it as JSON and markdown; return the exit status (0)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="benchmarks/results/reproduce")
    parser.add_argument("--json", default=None, help="default: RESULTS/summary.json")
    args = parser.parse_args(argv)
    results = Path(args.results)
    records = summary_rows(results)
    text = render(records)
    print(text, end="")
    Path(args.json or results / "summary.json").write_text(json.dumps(records, indent=1) + "\n")
    (results / "summary.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
