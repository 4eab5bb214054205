"""Running a reproduction: plan every row, run the missing ones in order, write the table after each.

Each row is an ordinary run folder ``OUT/rows/ROW`` made by :func:`pyro_gen.runs.run_plan`,
so ``pyro-gen evaluate`` and ``pyro-gen sample`` work on it. With ``resume`` a row whose
folder holds a finished evaluation is kept (its numbers read from its ``metrics.json``), a
row with a checkpoint continues from it (training, or the partial evaluation when training is
done), and a failed or never-started row is run afresh. A row that fails gets its error line
in the table and the next row runs.

A row with several seeds (:meth:`~.spec.Row.seeds_for` the budget) is one run folder per
seed, ``OUT/rows/ROW/seed-S``, trained with ``seed`` S; each seed folder is kept, continued or
run afresh like a row, the seeds run in order, and the table is written after each seed (the
row's mean and standard deviation over the seeds done so far). A failed seed is recorded and
the row's next seed runs.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from ...data.mnist import MNIST_ENV
from . import get_reproduction
from .spec import BUDGETS, Reproduction, Row
from .table import (
    TABLE_FORMAT,
    TABLE_JSON,
    done_entry,
    hardware,
    pending_entry,
    read_table,
    seeds_entry,
    write_table,
)

ROWS = "rows"


def needs_data(rep: Reproduction) -> bool:
    """Return whether some runnable row of ``rep`` reads the reproduction's ``data`` (has no own spec)."""
    return any(r.unavailable is None and r.data is None for r in rep.rows)


def resolve_data(rep: Reproduction, data: str | None, saved: str | None = None) -> str:
    """Return the data spec of a reproduction's runs: ``data``, else ``$PYRO_GEN_MNIST``, else the
    spec a resumed table saved; ``ValueError`` in one line when there is none or it is of another set."""
    if data is None and os.environ.get(MNIST_ENV):
        data = f"{rep.data}:{os.environ[MNIST_ENV]}"
    data = data or saved
    if not data:
        raise ValueError(
            f"{rep.name} needs {rep.data.upper()}, which is never downloaded: pass --data {rep.data}:PATH "
            f"(the folder of its IDX files) or set ${MNIST_ENV}"
        )
    name, _, path = data.partition(":")
    if name != rep.data or not path:
        raise ValueError(f"--data {data}: {rep.name} runs on {rep.data}; give --data {rep.data}:PATH")
    return data


#: settings that change how fast a run goes, not what it computes: not compared
_SPEED_ONLY = {"threads", "device", "progress"}


def settings_mismatch(run_dir: Path, row: Row, budget: str, data: str | None) -> list[str]:
    """Return where the finished run in ``run_dir`` was trained with other settings than ``row``'s
    at ``budget``: one ``section.key: saved != expected`` line per difference (empty: the same).

    Both sides are planned as ``fit`` would plan them, so a default spelled out on one side and
    left out on the other is no difference; the speed-only settings (threads, device, progress
    bars) are not compared. A folder without a readable ``config.json`` is one difference.
    """
    import dataclasses
    import json

    from ...runs import plan_run

    try:
        saved = json.loads((run_dir / "config.json").read_text())
        sections = {k: saved.get(k) or {} for k in ("run", "train", "trainer", "model")}
        ran = plan_run(saved["family"], **sections)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [f"config.json: unreadable ({e})"]
    wanted = row.settings(budget)
    wanted["run"] = {**wanted["run"], "data": row.data or data or sections["run"].get("data")}
    want = plan_run(row.family, **wanted)
    out = []
    if ran.family.name != want.family.name:
        out.append(f"family: {ran.family.name} != {want.family.name}")
    for section in ("train", "trainer", "model"):
        a, b = getattr(ran, section), getattr(want, section)
        if a is None or b is None or not dataclasses.is_dataclass(a) or not dataclasses.is_dataclass(b):
            if a != b:
                out.append(f"{section}: {a} != {b}")
            continue
        for key, value in dataclasses.asdict(b).items():
            got = getattr(a, key, None)
            if key in _SPEED_ONLY:
                continue
            if section == "trainer" and key == "estimator":
                got, value = got or "auto", value or "auto"
            if got != value:
                out.append(f"{section}.{key}: {got!r} != {value!r}")
    for key in ("binarize", "k", "eval_points"):
        got, value = getattr(ran.run, key, None), getattr(want.run, key, None)
        if got != value:
            out.append(f"run.{key}: {got!r} != {value!r}")
    return out


def _finished_metrics(run_dir: Path, rep: Reproduction) -> dict[str, Any] | None:
    """Return the metrics of a row whose run folder holds a finished evaluation, else None."""
    import json

    from ...runs import METRICS, PARTIAL

    try:
        metrics = json.loads((run_dir / METRICS).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or (run_dir / PARTIAL).exists():
        return None
    return metrics if isinstance(metrics.get(rep.metric_key), int | float) else None


def run_row(
    rep: Reproduction,
    row: Row,
    budget: str,
    run_dir: Path,
    data: str | None,
    device: str | None,
    progress: bool,
    seed: int | None = None,
) -> dict[str, Any]:
    """Run (or continue) one row (or one ``seed`` of it) into ``run_dir``; return the run's metrics.

    A folder with a checkpoint is resumed (training or the partial evaluation continues); a
    folder without one is started afresh (``overwrite``). The row's own data spec
    (:attr:`~.spec.Row.data`) wins over ``data``; ``seed`` sets the training seed.
    """
    from ...runs import CHECKPOINT, plan_run, run_plan

    sections = row.settings(budget)
    resume = (run_dir / CHECKPOINT).is_file()
    if seed is not None:
        sections["train"] = {**sections.get("train", {}), "seed": int(seed)}
    sections["run"] = {
        **sections["run"],
        "data": row.data or data,
        "out": str(run_dir),
        "resume": resume,
        "overwrite": not resume and run_dir.exists(),
    }
    if device is not None:
        sections["train"] = {**sections["train"], "device": device}
    plan = plan_run(row.family, **sections)
    metrics = run_plan(plan, out=run_dir, progress=progress)
    if metrics is None:
        raise ValueError(f"row {row.name}: the run wrote no metrics")
    return metrics


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def reproduce(
    name: str | Reproduction,
    *,
    budget: str = "quick",
    out: str | os.PathLike | None = None,
    data: str | None = None,
    device: str | None = None,
    resume: bool = False,
    rows: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the reproduction ``name`` (a registered name or a :class:`Reproduction`) at ``budget``
    into ``out``; return the table (as in ``table.json``).

    ``out`` defaults to ``runs/reproduce/NAME-BUDGET``; ``data`` is ``mnist:PATH`` (default:
    ``$PYRO_GEN_MNIST``); ``device`` is the rows' training device (``cpu``, ``cuda``, ``auto``);
    ``rows`` limits the rows run (the others stay as they are). An ``out`` that holds a table
    is refused unless ``resume``; a resumed table keeps its budget. Progress is one line per
    row on stderr.
    """
    rep = get_reproduction(name)
    if budget not in BUDGETS or budget not in rep.budgets:
        raise ValueError(f"--budget {budget}: {rep.name} has the budgets {', '.join(rep.budgets)}")
    out = Path(out or f"runs/reproduce/{rep.name}-{budget}")
    for r in rows or []:
        rep.row(r)
    saved = read_table(out)
    if saved is not None and not resume:
        raise ValueError(
            f"--out {out} holds a reproduction table; pass --resume to continue it, or another --out"
        )
    if saved is not None and (saved.get("name"), saved.get("budget")) != (rep.name, budget):
        raise ValueError(
            f"--out {out} holds {saved.get('name')} at --budget {saved.get('budget')}, not {rep.name} at "
            f"--budget {budget}; use another --out"
        )
    if needs_data(rep):
        data = resolve_data(rep, data, saved.get("data") if saved else None)
        table_data = data
    else:
        data = None
        table_data = ", ".join(dict.fromkeys(r.data for r in rep.rows if r.data))
    previous = {e["name"]: e for e in (saved or {}).get("rows", [])}
    table = {
        "format": TABLE_FORMAT,
        "name": rep.name,
        "title": rep.title,
        "paper": rep.paper,
        "metric": rep.metric,
        "units": rep.units,
        "lower_is_better": rep.lower_is_better,
        "budget": budget,
        "budget_description": rep.budgets[budget],
        "data": table_data,
        "notes": list(rep.notes) + list(rep.budget_notes.get(budget, ())),
        "rows": [pending_entry(r, budget) for r in rep.rows],
    }
    # keys only the newer tables have, so the earlier tables are written as they were
    if rep.fmt != ".2f":
        table["fmt"] = rep.fmt
    if rep.extra_metrics:
        table["extra_metrics"] = [
            {"key": m.key, "label": m.label, "fmt": m.fmt, "scale": m.scale, "units": m.units}
            for m in rep.extra_metrics
        ]
    if not rep.likelihood:
        table["likelihood_columns"] = False
    runnable = [r for r in rep.rows if r.unavailable is None]
    seed_records: dict[str, dict[int, dict[str, Any]]] = {}
    # the finished rows (and seeds) first: kept as they are, their numbers read from their metrics.json
    for i, row in enumerate(rep.rows):
        run_dir = out / ROWS / row.name
        old = previous.get(row.name, {})
        seeds = row.seeds_for(budget)
        if seeds:
            if row.unavailable is not None:
                continue
            old_seeds = {r.get("seed"): r for r in old.get("per_seed", []) if isinstance(r, dict)}
            records: dict[int, dict[str, Any]] = {}
            for s in seeds:
                rec = old_seeds.get(s, {})
                metrics = _finished_metrics(run_dir / seed_dir(s), rep) if resume else None
                if metrics is not None:
                    extra = {k: rec[k] for k in ("wall_seconds", "hardware") if k in rec}
                    records[s] = _seed_record(rep, row, s, metrics, extra)
                elif str(rec.get("status", "")).startswith("failed"):
                    records[s] = rec
            seed_records[row.name] = records
            table["rows"][i] = seeds_entry(rep, row, seeds, records, f"{ROWS}/{row.name}")
            continue
        metrics = _finished_metrics(run_dir, rep) if resume else None
        if metrics is not None:
            diff = settings_mismatch(run_dir, row, budget, data)
            if diff:
                raise ValueError(
                    f"row {row.name}: {run_dir} holds a run with other settings than the {budget} "
                    f"budget's ({'; '.join(diff[:3])}); move it away or use another --out"
                )
            extra = {k: old[k] for k in ("wall_seconds", "hardware") if k in old}
            table["rows"][i] = done_entry(rep, row, metrics, f"{ROWS}/{row.name}", extra)
        elif row.name in previous and previous[row.name].get("status", "").startswith("failed"):
            table["rows"][i] = previous[row.name]
    write_table(out, table)
    todo = [
        r
        for r in runnable
        if table["rows"][rep.rows.index(r)]["status"] != "done" and (not rows or r.name in rows)
    ]
    done = sum(table["rows"][rep.rows.index(r)]["status"] == "done" for r in runnable)
    chosen = f" ({len(todo)} chosen by --rows)" if rows else ""
    runs = sum(
        len(r.seeds_for(budget)) - len(seed_records.get(r.name, {})) for r in todo if r.seeds_for(budget)
    )
    seeds_left = f", {runs} seed runs among them" if runs else ""
    _log(
        f"{rep.name} ({budget}) in {out}: {done} of {len(runnable)} runnable rows done, "
        f"{len(todo)} to run{chosen}{seeds_left}"
    )
    for n, row in enumerate(todo, 1):
        i = rep.rows.index(row)
        if row.seeds_for(budget):
            _run_seeds(
                rep, row, budget, out, table, seed_records[row.name], data, device, progress, n, len(todo)
            )
            continue
        run_dir = out / ROWS / row.name
        hw = hardware(device)
        table["rows"][i] = {
            **pending_entry(row, budget),
            "status": "running",
            "run": f"{ROWS}/{row.name}",
            "hardware": hw,
        }
        write_table(out, table)
        _log(f"[{n}/{len(todo)}] {row.name}: {row.label} -> {run_dir} (load {_load(hw)})")
        start = time.perf_counter()
        try:
            metrics = run_row(rep, row, budget, run_dir, data, device, progress)
            hw["threads"] = metrics.get("threads")
            entry = done_entry(
                rep,
                row,
                metrics,
                f"{ROWS}/{row.name}",
                {"wall_seconds": round(time.perf_counter() - start, 1), "hardware": hw},
            )
            _log(
                f"[{n}/{len(todo)}] {row.name}: {format(entry['ours'], rep.fmt)} {rep.units} (published "
                f"{'-' if row.published is None else format(row.published, rep.fmt)}), "
                f"{entry['wall_seconds'] / 60:.1f} min"
            )
        except Exception as e:  # the table goes on; --resume retries the row
            entry = {
                **pending_entry(row, budget),
                "status": f"failed: {type(e).__name__}: {_first_line(e)}",
                "run": f"{ROWS}/{row.name}",
                "hardware": hw,
                "wall_seconds": round(time.perf_counter() - start, 1),
            }
            _log(f"[{n}/{len(todo)}] {row.name}: {entry['status']}")
        table["rows"][i] = entry
        write_table(out, table)
    _log(f"table: {out / 'table.md'}, {out / TABLE_JSON}")
    return table


def seed_dir(seed: int) -> str:
    """Return the name of a seed's run folder inside its row's folder: ``seed-S``."""
    return f"seed-{int(seed)}"


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def _seed_record(
    rep: Reproduction, row: Row, seed: int, metrics: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """Return one seed's record (a :func:`done_entry` with its ``seed``)."""
    run = f"{ROWS}/{row.name}/{seed_dir(seed)}"
    return {"seed": int(seed), **done_entry(rep, row, metrics, run, extra)}


def _run_seeds(
    rep: Reproduction,
    row: Row,
    budget: str,
    out: Path,
    table: dict[str, Any],
    records: dict[int, dict[str, Any]],
    data: str | None,
    device: str | None,
    progress: bool,
    n: int,
    total: int,
) -> None:
    """Run the seeds of ``row`` that are not done, writing the table after each."""
    i = rep.rows.index(row)
    seeds = row.seeds_for(budget)
    missing = [s for s in seeds if records.get(s, {}).get("status") != "done"]
    for j, s in enumerate(missing, 1):
        run_dir = out / ROWS / row.name / seed_dir(s)
        hw = hardware(device)
        records.pop(s, None)
        table["rows"][i] = seeds_entry(rep, row, seeds, records, f"{ROWS}/{row.name}", running=s)
        table["rows"][i]["hardware"] = hw
        write_table(out, table)
        tag = f"[{n}/{total}] {row.name} seed {s} ({j}/{len(missing)})"
        _log(f"{tag}: {row.label} -> {run_dir} (load {_load(hw)})")
        start = time.perf_counter()
        try:
            metrics = run_row(rep, row, budget, run_dir, data, device, progress, seed=s)
            hw["threads"] = metrics.get("threads")
            records[s] = _seed_record(
                rep, row, s, metrics, {"wall_seconds": round(time.perf_counter() - start, 1), "hardware": hw}
            )
            _log(
                f"{tag}: {format(records[s]['ours'], rep.fmt)} {rep.units} (published "
                f"{'-' if row.published is None else format(row.published, rep.fmt)}), "
                f"{records[s]['wall_seconds'] / 60:.1f} min"
            )
        except Exception as e:  # the row goes on with its next seed; --resume retries this one
            records[s] = {
                "seed": int(s),
                "status": f"failed: {type(e).__name__}: {_first_line(e)}",
                "run": f"{ROWS}/{row.name}/{seed_dir(s)}",
                "hardware": hw,
                "wall_seconds": round(time.perf_counter() - start, 1),
            }
            _log(f"{tag}: {records[s]['status']}")
        table["rows"][i] = seeds_entry(rep, row, seeds, records, f"{ROWS}/{row.name}")
        write_table(out, table)
    entry = table["rows"][i]
    if entry["status"] == "done":
        std = entry.get("ours_std")
        _log(
            f"[{n}/{total}] {row.name}: {format(entry['ours'], rep.fmt)}"
            f"{'' if std is None else ' ± ' + format(std, rep.fmt)} {rep.units} over {len(seeds)} seeds "
            f"(published {'-' if row.published is None else format(row.published, rep.fmt)})"
        )


def _load(hw: dict[str, Any]) -> str:
    return "?" if not hw.get("load") else f"{hw['load'][0]:.2f}"
