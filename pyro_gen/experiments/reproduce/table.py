"""The reproduction table: ``table.json`` (every number) and ``table.md`` (what a person reads).

Torch-free. A row entry holds the published figure with its source tag, ours (from the row's
run folder), the difference ours - published, epochs, times, the hardware it ran on and its
status: ``done``, ``pending``, ``running``, ``failed: <error line>`` or ``not available: ...``.
Both files are written after every row (to a temporary file moved over the old one), so a
half-finished table is readable.

A row run over several seeds (:attr:`~.spec.Row.seeds`) holds one record per seed under
``per_seed`` and shows the mean over the seeds done as ``ours`` with the sample standard
deviation (``n - 1`` in the denominator; None below two seeds) as ``ours_std``,
``seeds_done`` of ``seeds``; its status is ``partial: N of M seeds`` while some are missing.
Extra metrics (:attr:`~.spec.Reproduction.extra_metrics`) go under ``extra`` (and
``extra_std``) by metric key, their published figures under ``published_extra``.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

from .spec import Metric, Reproduction, Row

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


def pending_entry(row: Row, budget: str | None = None) -> dict[str, Any]:
    """Return the table entry of a row not run yet (or not available).

    A row with published extra figures gets ``published_extra``; a row run over several seeds
    at ``budget`` gets ``seeds`` (the list) and ``seeds_done`` (0).
    """
    entry: dict[str, Any] = {
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
    if row.published_extra:
        entry["published_extra"] = dict(row.published_extra)
    seeds = row.seeds_for(budget) if budget is not None else ()
    if seeds:
        entry.update(seeds=list(seeds), seeds_done=0, ours_std=None)
    return entry


def metric_value(metrics: dict[str, Any], metric: Metric) -> float | None:
    """Return ``metric.scale * metrics[metric.key]`` to 6 decimals (None when missing or not finite)."""
    value = metrics.get(metric.key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(metric.scale * float(value), 6)


def done_entry(
    rep: Reproduction, row: Row, metrics: dict[str, Any], run: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """Return the entry of a finished row (or of one seed of it) from its run's ``metrics.json``.

    ``ours`` is ``sign * metrics[metric_key]`` rounded to 4 decimals, ``difference`` ours -
    published (None without a published figure); with extra metrics, ``extra`` maps each
    metric's key to its scaled value (None when the run has none); ``extra`` (the argument)
    adds the driver's record (``wall_seconds``, ``hardware``).
    """
    value = metrics.get(rep.metric_key)
    if not isinstance(value, int | float):
        raise ValueError(f"{run}/metrics.json holds no {rep.metric_key}")
    ours = round(rep.sign * float(value), 4)
    entry = pending_entry(row)
    if rep.extra_metrics:
        entry["extra"] = {m.key: metric_value(metrics, m) for m in rep.extra_metrics}
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


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Return the mean and the sample standard deviation (``n - 1``) of ``values``.

    ``(None, None)`` for no value, ``(mean, None)`` for one; both rounded to 6 decimals.
    """
    vals = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return round(mean, 6), None
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return round(mean, 6), round(math.sqrt(var), 6)


def _total(records: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in records if isinstance(r.get(key), int | float)]
    return round(sum(vals), 3) if vals else None


def seeds_entry(
    rep: Reproduction,
    row: Row,
    seeds: tuple[int, ...] | list[int],
    records: dict[int, dict[str, Any]],
    run: str,
    running: int | None = None,
) -> dict[str, Any]:
    """Return the entry of a row run over ``seeds`` from its per-seed ``records``.

    ``records`` maps a seed to its record: a :func:`done_entry` (status ``done``) or one with
    status ``failed: ...``; seeds without a record are pending, ``running`` is the seed being
    run. ``ours`` / ``ours_std`` are the mean and sample standard deviation over the done
    seeds (likewise ``extra`` / ``extra_std`` per extra metric, over the done seeds where the
    metric has a value, counted in ``extra_seeds``), ``difference`` mean -
    published; the times are sums over the seeds; ``steps``, ``epochs``, ``device``,
    ``threads`` and ``hardware`` come from the last done seed. Status: ``done`` when every seed
    is done, else ``running`` (a seed is running), ``failed: seed S: ...`` (a seed failed),
    ``partial: N of M seeds`` or ``pending``.
    """
    seeds = [int(s) for s in seeds]
    entry = pending_entry(row)
    entry.update(seeds=seeds, run=run)
    per_seed = []
    for s in seeds:
        rec = records.get(s)
        if rec is None:
            rec = {"seed": s, "status": "running" if s == running else "pending"}
        per_seed.append({"seed": s, **{k: v for k, v in rec.items() if k not in _ROW_KEYS}})
    done = [r for r in per_seed if r.get("status") == "done"]
    failed = [r for r in per_seed if str(r.get("status", "")).startswith("failed")]
    ours, ours_std = mean_std([r["ours"] for r in done])
    entry.update(
        ours=None if ours is None else round(ours, 4),
        ours_std=None if ours_std is None else round(ours_std, 4),
        seeds_done=len(done),
    )
    entry["difference"] = None if ours is None or row.published is None else round(ours - row.published, 4)
    if rep.extra_metrics:
        stats = {
            m.key: mean_std([(r.get("extra") or {}).get(m.key) for r in done]) for m in rep.extra_metrics
        }
        entry["extra"] = {k: v[0] for k, v in stats.items()}
        entry["extra_std"] = {k: v[1] for k, v in stats.items()}
        entry["extra_seeds"] = {
            m.key: sum((r.get("extra") or {}).get(m.key) is not None for r in done) for m in rep.extra_metrics
        }
    last = done[-1] if done else {}
    for key in ("estimator", "epochs", "steps", "k", "eval_points", "device", "threads", "hardware"):
        entry[key] = last.get(key)
    for key in ("train_seconds", "eval_seconds", "wall_seconds"):
        entry[key] = _total(done, key)
    if len(done) == len(seeds):
        status = "done"
    elif running is not None:
        status = "running"
    elif failed:
        status = f"failed: seed {failed[0]['seed']}: " + str(failed[0]["status"]).removeprefix("failed: ")
    elif done:
        status = f"partial: {len(done)} of {len(seeds)} seeds"
    else:
        status = "pending"
    entry["status"] = status
    entry["per_seed"] = per_seed
    return entry


# keys of a row's entry that a per-seed record does not repeat
_ROW_KEYS = ("name", "label", "published", "tag", "source", "difference", "published_extra")


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


def _ours_cell(value: Any, std: Any, fmt: str, seeds: bool) -> str:
    if not isinstance(value, int | float):
        return "-"
    if seeds and isinstance(std, int | float):
        return f"{format(value, fmt)} ± {format(std, fmt)}"
    return format(value, fmt)


def _seeds_cell(entry: dict[str, Any]) -> str:
    seeds = entry.get("seeds")
    if not seeds:
        return "1"
    return f"{entry.get('seeds_done') or 0}/{len(seeds)}"


def render_markdown(table: dict[str, Any]) -> str:
    """Return ``table.md``: a heading, the protocol, one line per row, the notes and the machines.

    The fixed columns follow the table: ``seeds`` (done / run) when a row runs over several
    seeds (its numbers then read mean ± standard deviation), an ours column per extra metric
    (and a published one when some row has a published figure for it), ``k (eval)`` and ``test
    points`` for likelihood tables (``likelihood_columns``, true when absent) and ``steps``
    otherwise.
    """
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
    rows = table["rows"]
    fmt = table.get("fmt", ".2f")
    extras = table.get("extra_metrics") or []
    seeds = any(e.get("seeds") for e in rows)
    likelihood = table.get("likelihood_columns", True)
    # an extra metric's published column only when some row has a published figure for it
    published = {
        m["key"]: any((e.get("published_extra") or {}).get(m["key"]) is not None for e in rows)
        for m in extras
    }
    header = ["row", "published", "source", "ours", "difference"]
    header += ["seeds"] if seeds else []
    for m in extras:
        header += ([f"{m['label']} published"] if published[m["key"]] else []) + [f"{m['label']} ours"]
    header += ["k (eval)", "test points"] if likelihood else ["steps"]
    header += ["epochs", "train min", "eval min", "wall min", "hardware", "status"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in rows:
        cells = [
            e["label"],
            _num(e.get("published"), fmt),
            e.get("tag") or "-",
            _ours_cell(e.get("ours"), e.get("ours_std"), fmt, bool(e.get("seeds"))),
            _num(e.get("difference"), fmt, signed=True),
        ]
        if seeds:
            cells.append(_seeds_cell(e))
        for m in extras:
            if published[m["key"]]:
                cells.append(_num((e.get("published_extra") or {}).get(m["key"]), m.get("fmt", ".2f")))
            cell = _ours_cell(
                (e.get("extra") or {}).get(m["key"]),
                (e.get("extra_std") or {}).get(m["key"]),
                m.get("fmt", ".2f"),
                bool(e.get("seeds")),
            )
            n = (e.get("extra_seeds") or {}).get(m["key"])
            if cell != "-" and isinstance(n, int) and n < (e.get("seeds_done") or 0):
                cell += f" ({n} of {e['seeds_done']} seeds)"
            cells.append(cell)
        if likelihood:
            cells += [str(e.get("k") or "-"), str(e.get("eval_points") or "-")]
        else:
            cells.append(str(e.get("steps") or "-"))
        lines.append(
            "| "
            + " | ".join(
                [
                    *cells,
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
    legend = [
        f"{m['label']}: `{m['key']}` of metrics.json"
        + (f" x {m['scale']:g}" if m.get("scale", 1) != 1 else "")
        + (f", {m['units']}" if m.get("units") else "")
        for m in extras
    ]
    if legend:
        lines.append("Extra columns: " + "; ".join(legend) + ".")
        lines.append("")
    if seeds:
        lines.append(
            "Rows over several seeds: ours = mean ± sample standard deviation (n - 1) over the seeds "
            "done (an extra metric's over the seeds where it has a value, their count shown when some "
            "lack one), difference = mean - published, seeds = done/run, times summed over the seeds; "
            "each seed's run folder is ROW/seed-S."
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
