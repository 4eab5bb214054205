"""The reproduction table: ``table.json`` (every number) and ``table.md`` (what a person reads).

Torch-free. A row entry holds the published figure with its source tag, ours (from the row's
run folder), the difference ours - published, epochs, times, the hardware it ran on and its
status: ``done``, ``pending``, ``running``, ``failed: <error line>`` or ``not available: ...``.
Both files are written after every row (to a temporary file moved over the old one), so a
half-finished table is readable.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from .spec import Reproduction, Row

TABLE_JSON = "table.json"
TABLE_MD = "table.md"
TABLE_FORMAT = 1


def cpu_model() -> str:
    """Return the CPU's model name (from /proc/cpuinfo, else :func:`platform.processor`), or "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware(device: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Return the machine a row runs on: ``cpu`` (model), ``cpus`` (usable cores), ``gpu`` (the CUDA
    device's name when ``device`` is a CUDA device, else None), ``threads`` and ``load`` (the
    1-, 5- and 15-minute load averages at the call, in runnable processes)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    gpu = None
    if device is not None and str(device).startswith(("cuda", "auto")):
        import torch  # only when a GPU may be used

        if torch.cuda.is_available():
            dev = torch.device("cuda" if str(device) == "auto" else device)
            gpu = torch.cuda.get_device_name(dev)
    return {"cpu": cpu_model(), "cpus": cpus, "gpu": gpu, "threads": threads, "load": load}


def pending_entry(row: Row) -> dict[str, Any]:
    """Return the table entry of a row not run yet (or not available)."""
    return {
        "name": row.name,
        "label": row.label,
        "published": row.published,
        "tag": row.tag,
        "source": row.source,
        "ours": None,
        "difference": None,
        "status": row.unavailable or "pending",
        "run": None,
    }


def done_entry(
    rep: Reproduction, row: Row, metrics: dict[str, Any], run: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """Return the entry of a finished row from its run's ``metrics.json`` (``metrics``).

    ``ours`` is ``sign * metrics[metric_key]`` rounded to 4 decimals, ``difference`` ours -
    published (None without a published figure); ``extra`` adds the driver's record
    (``wall_seconds``, ``hardware``).
    """
    value = metrics.get(rep.metric_key)
    if not isinstance(value, int | float):
        raise ValueError(f"{run}/metrics.json holds no {rep.metric_key}")
    ours = round(rep.sign * float(value), 4)
    entry = pending_entry(row)
    entry.update(
        ours=ours,
        difference=None if row.published is None else round(ours - row.published, 4),
        status="done",
        run=run,
        estimator=metrics.get("estimator"),
        epochs=metrics.get("epochs"),
        steps=metrics.get("steps"),
        k=metrics.get("k"),
        eval_points=metrics.get("eval_points"),
        train_seconds=metrics.get("seconds"),
        eval_seconds=metrics.get("eval_seconds"),
        device=metrics.get("device"),
        threads=metrics.get("threads"),
    )
    entry.update(extra)
    return entry


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_table(out: Path, table: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``table.json`` and ``table.md`` of ``table`` into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / TABLE_JSON, json.dumps(table, indent=1) + "\n")
    _atomic_write(out / TABLE_MD, render_markdown(table))
    return out / TABLE_JSON, out / TABLE_MD


def read_table(out: Path) -> dict[str, Any] | None:
    """Return the table in ``out/table.json`` (None when there is none); ``ValueError`` when unreadable."""
    path = out / TABLE_JSON
    if not path.is_file():
        return None
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} cannot be read ({e}); delete it or choose another --out") from e
    if not isinstance(table, dict) or table.get("format") != TABLE_FORMAT or "rows" not in table:
        raise ValueError(f"{path} is not a pyro-gen reproduction table; choose another --out")
    return table


def _num(value: Any, fmt: str = ".2f", signed: bool = False) -> str:
    if not isinstance(value, int | float):
        return "-"
    return format(value, ("+" if signed else "") + fmt)


def _minutes(seconds: Any) -> str:
    return "-" if not isinstance(seconds, int | float) else f"{seconds / 60:.1f}"


def _hardware_cell(entry: dict[str, Any]) -> str:
    hw = entry.get("hardware")
    if not hw:
        return "-"
    where = hw.get("gpu") or "CPU"
    threads = entry.get("threads") or hw.get("threads")
    load = hw.get("load")
    parts = [where]
    if threads:
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    if load:
        parts.append(f"load {load[0]:.2f}")
    return ", ".join(parts)


def render_markdown(table: dict[str, Any]) -> str:
    """Return ``table.md``: a heading, the protocol, one line per row, the notes and the machines."""
    lines = [f"# {table['name']}: {table['title']}", ""]
    lines.append(
        f"{table['metric']}, {table['units']}; {'lower' if table.get('lower_is_better') else 'higher'} "
        "is better. difference = ours - published."
    )
    lines.append("")
    lines.append(f"- budget: **{table['budget']}**: {table['budget_description']}")
    lines.append(f"- data: {table.get('data')}")
    lines.append(f"- paper: {table['paper']}")
    lines.append("")
    header = (
        "| row | published | source | ours | difference | k (eval) | test points | epochs | "
        "train min | eval min | wall min | hardware | status |"
    )
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for e in table["rows"]:
        lines.append(
            "| "
            + " | ".join(
                [
                    e["label"],
                    _num(e.get("published")),
                    e.get("tag") or "-",
                    _num(e.get("ours")),
                    _num(e.get("difference"), signed=True),
                    str(e.get("k") or "-"),
                    str(e.get("eval_points") or "-"),
                    _num(e.get("epochs"), ".1f"),
                    _minutes(e.get("train_seconds")),
                    _minutes(e.get("eval_seconds")),
                    _minutes(e.get("wall_seconds")),
                    _hardware_cell(e),
                    str(e.get("status", "")).replace("|", "/"),
                ]
            )
            + " |"
        )
    lines.append("")
    tags = sorted({(e.get("tag"), e.get("source")) for e in table["rows"] if e.get("tag")})
    lines.append(
        "Sources: " + "; ".join(f"{t} {s}" for t, s in tags) + ". Tags as in REFERENCES.md: [P] the "
        "paper's own code or table, [S] a secondary source quoting the paper, [R] a third party's re-run."
    )
    lines.append("")
    if table.get("notes"):
        lines.append("Notes:")
        lines += [f"- {n}" for n in table["notes"]]
        lines.append("")
    machines = sorted({e["hardware"]["cpu"] for e in table["rows"] if e.get("hardware")})
    gpus = sorted(
        {e["hardware"]["gpu"] for e in table["rows"] if e.get("hardware") and e["hardware"].get("gpu")}
    )
    if machines:
        lines.append(
            "Machines: CPU " + "; ".join(machines) + ("; GPU " + "; ".join(gpus) if gpus else "") + "."
        )
        lines.append("")
    lines.append(
        "Times: train = training wall time of the steps, eval = the final evaluation (both summed over "
        "interrupted sessions), wall = the session that finished the row, setup and figures included."
    )
    return "\n".join(lines) + "\n"
