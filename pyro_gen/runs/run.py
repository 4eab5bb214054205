"""Running a plan (fit with the engine, evaluate, report, ``metrics.json``) and evaluating a run folder.

:func:`run_plan` is ``pyro-gen fit``, :func:`run_fit` the same from Python, :func:`evaluate_run`
is ``pyro-gen evaluate RUN``. Both end in one place, which evaluates (:func:`evaluation_step`),
reports and writes the metrics.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..registry import get_family
from .evaluation import PARTIAL, check_positive, evaluation_step, print_line, read_partial
from .folder import check_out, load_run, load_run_data
from .plan import (
    CHECKPOINT,
    CONFIG,
    HISTORY,
    METRICS,
    RunPlan,
    plan_from_dict,
    plan_run,
    read_config,
    section_classes,
)
from .tracking import TRACK_DIRS, Tracker, check_tracker, open_tracker
from .training import (
    finished_checkpoint,
    load_plan_data,
    read_history,
    restore_model,
    result_from_checkpoint,
    train_plan,
    with_budget,
)


def _training_metrics(plan: RunPlan, result) -> dict[str, Any]:
    """Return the training part of ``metrics.json`` from a :class:`~pyro_gen.inference.FitResult`."""
    return {
        "model": plan.family.name,
        "data": plan.run.data,
        "estimator": result.estimator,
        "kind": result.kind,
        "seed": plan.train.seed or 0,
        "steps": result.steps,
        "epochs": result.epochs,
        "seconds": result.seconds,
        "cpu_seconds": result.cpu_seconds,
        "ms_per_step": result.ms_per_step,
        "step_ms": result.step_ms,
        "train_eval_seconds": result.eval_seconds,
        "threads": result.threads,
        "device": result.device,
        "notes": list(getattr(result, "notes", []) or []),
    }


def _read_metrics(out: Path) -> dict[str, Any] | None:
    try:
        metrics = json.loads((out / METRICS).read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def _already_evaluated(plan: RunPlan, out: Path, data, steps: int) -> dict[str, Any] | None:
    """Return the metrics of a run that is trained to ``steps`` and holds a finished evaluation
    of the plan's protocol (k, points, seed), else None."""
    metrics = _read_metrics(out)
    if metrics is None or (out / PARTIAL).exists() or metrics.get("steps") != steps:
        return None
    n = int(data.test.shape[0])
    n = n if plan.run.eval_points is None else min(n, plan.run.eval_points)
    same_k = metrics.get("likelihood_kind") != "importance" or metrics.get("k") == plan.run.k
    if metrics.get("eval_points") == n and metrics.get("eval_seed") == (plan.train.seed or 0) and same_k:
        return metrics
    return None


def _finish(
    plan: RunPlan,
    model: Any,
    data,
    out: Path,
    result,
    *,
    progress: bool | None,
    evaluate: bool = True,
    hint: str = "",
    tracker: Tracker | None = None,
    **protocol: Any,
) -> dict[str, Any]:
    """Evaluate (unless ``evaluate=False``), report, write ``metrics.json`` and ``index.html`` and
    feed the tracker; return the metrics."""
    from ..report import report, write_metrics

    metrics = _training_metrics(plan, result)
    if evaluate:
        metrics.update(evaluation_step(plan, model, data, out, progress=progress, hint=hint, **protocol))
    else:
        metrics["eval_seconds"] = 0.0
    metrics["checkpoint"] = CHECKPOINT if (out / CHECKPOINT).exists() else None
    # the report shows the family's model object, whatever the trainer returned as its model
    written = report(
        dataclasses.replace(result, model=model), out, data=data, metrics=metrics, seed=plan.train.seed or 0
    )
    metrics["figures"] = [p.name for p in written if p.suffix == ".png"]
    write_metrics(metrics, out)
    _publish(out, metrics, tracker, result.history)
    return metrics


def _publish(out: Path, metrics: dict[str, Any], tracker: Tracker | None, history=None) -> None:
    """Write the run's ``index.html``; give the tracker the history rows it has not logged, the
    final metrics, the figures and the run's files."""
    from ..report import write_run_index

    page = write_run_index(out)
    if tracker is None:
        return
    if history is not None:
        tracker.log_rows(history)
    figures = [out / name for name in metrics.get("figures") or []]
    tracker.log_final(metrics, figures, int(metrics.get("steps") or 0))
    tracker.log_files([out / CONFIG, out / METRICS, out / HISTORY, page])


def run_plan(
    plan: RunPlan,
    *,
    out: str | os.PathLike | None = None,
    progress: bool | None = True,
    callbacks: Sequence[Callable] = (),
    evaluate: bool = True,
) -> dict | None:
    """Fit, evaluate and report one run of ``plan`` into ``out`` (default: ``plan.run.out``).

    Returns the metrics also written to ``metrics.json``: ``model``, ``data``, ``estimator``,
    ``kind``, ``steps``, ``epochs``, ``seconds`` (training wall seconds, steps only),
    ``cpu_seconds``, ``ms_per_step``, ``threads``, ``device``, the evaluation of
    :func:`evaluation_step` (``train_elbo``, ``test_elbo``, ``test_log_likelihood`` in nats
    per data point, ``test_bits_per_dim``, ``k``, ``eval_points`` where they apply) and
    ``eval_seconds`` (wall seconds of the final evaluation). Before the evaluation starts one
    line on stderr says how many points at what ``k`` and about how long it will take.
    ``callbacks`` are the engine's per-step callbacks; with ``evaluate=False`` the final
    evaluation is skipped (the metrics hold training numbers). The folder gets an
    ``index.html`` (:func:`pyro_gen.report.write_run_index`); with ``plan.run.track`` set,
    the history rows, gradient-variance rows of recorders among ``callbacks``, final metrics,
    figures and settings go to TensorBoard or MLflow (:mod:`pyro_gen.runs.tracking`). A
    resumed run whose checkpoint is already at the requested final step is not trained again
    (a resumed tracker continues the same store): its evaluation is finished
    (continuing a partial one), or, when it holds a finished evaluation of the same protocol,
    its metrics are returned as they are. Under ``torchrun`` every rank trains; only rank 0
    writes files and evaluates (other ranks return None).
    """
    import pyro
    import torch.distributed as dist

    from ..inference.engine import torch_threads

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    family = plan.family
    out = Path(out or plan.run.out or f"runs/{family.name}-{plan.run.data.split(':')[0]}")
    check_out(out, plan.run)
    check_tracker(plan.run.track)
    if plan.run.overwrite and not plan.run.resume and rank == 0:  # no old run's log survives
        for name in TRACK_DIRS.values():
            if (out / name).is_dir():
                shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)
    seed = plan.train.seed or 0
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    data = load_plan_data(plan)
    model = family.build(data, plan.model)
    train = with_budget(plan, data)
    config = {**plan.to_dict(), "data_info": _data_info(data)}
    config["run"]["out"] = str(out)
    tracker = open_tracker(plan.run.track, out, resume=plan.run.resume) if rank == 0 else None
    # the run's thread count (--threads, else the family's) holds for its evaluation too
    with torch_threads(train.threads):
        if tracker is None:
            return _run_plan(plan, out, data, model, train, config, rank, progress, callbacks, evaluate, None)
        if progress:
            print_line(f"tracking: {tracker.hint}")
        with tracker:
            tracker.log_config(config)
            tracker.watch(callbacks)
            return _run_plan(
                plan, out, data, model, train, config, rank, progress, callbacks, evaluate, tracker
            )


def _run_plan(
    plan: RunPlan,
    out: Path,
    data,
    model,
    train: TrainConfig,
    config: dict[str, Any],
    rank: int,
    progress: bool | None,
    callbacks: Sequence[Callable],
    evaluate: bool,
    tracker: Tracker | None,
) -> dict | None:
    import torch

    from ..inference.engine import resolve_device
    from ..report import write_history_csv, write_json

    family = plan.family
    if rank == 0 and not plan.run.resume:
        write_json(config, out / CONFIG)
    finished = finished_checkpoint(plan, out, data, train)
    if finished is not None:  # trained already: straight to the evaluation
        step = int(finished["loop"]["step"])
        done = _already_evaluated(plan, out, data, step) if rank == 0 and evaluate else None
        if done is not None:
            print_line(
                f"{out}: trained to step {step} and evaluated already ({done['eval_points']} test points)"
            )
            if tracker is not None:
                _publish(out, done, tracker, read_history(out / HISTORY))
            return done
        if rank == 0:
            print_line(f"{out}: training is already at step {step}, the requested final step; evaluating")
        model = restore_model(plan, out, model, data, finished)
        device = resolve_device(train.device)
        if device is not None and isinstance(model, torch.nn.Module):
            model.to(device)
        result = result_from_checkpoint(plan, model, finished, train, data, out / CHECKPOINT)
    else:
        rows = [tracker.log_row] if tracker is not None else []
        result = train_plan(plan, model, data, train, out, progress and rank == 0, callbacks, rows)
        if rank == 0:  # the whole history, also for a run whose evaluation never finishes
            write_history_csv(result.history, out / HISTORY)
    if rank == 0 and plan.run.resume:  # the resumed run's budget and settings, once it trained
        write_json(config, out / CONFIG)
    if rank != 0:
        return None
    if family.trainer == "adversarial" and isinstance(model, torch.nn.Module):
        model.cpu()  # (after --device cuda) evaluation, figures and loading work on the CPU
    if family.state is not None:
        torch.save(family.state(model), out / (family.state_file or "model.pt"))
    hint = f"limit with --eval-points, or later: pyro-gen evaluate {out}"
    return _finish(
        plan, model, data, out, result, progress=progress, evaluate=evaluate, hint=hint, tracker=tracker
    )


def _data_info(data) -> dict[str, Any]:
    return {
        "name": data.name,
        "shape": list(data.shape),
        "dim": data.dim,
        "binarized": data.binarized,
        "num_levels": data.num_levels,
    }


def run_fit(
    family_name: str,
    data_spec: str = "digits",
    *,
    out: str | os.PathLike,
    options: dict | None = None,
    seed: int = 0,
    epochs: float | None = None,
    steps: int | None = None,
    k: int = 5000,
    binarize: str | None = "default",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = True,
    estimator: str | None = None,
    num_particles: int | None = None,
    track: str = "none",
    eval_points: int | None = None,
    **train_settings: Any,
) -> dict[str, Any] | None:
    """Fit ``family_name`` on ``data_spec``, evaluate on the test split, write the run folder.

    ``options`` are the family's settings (its config dataclass fields; trainer settings
    such as a GAN's ``loss`` are accepted there too); ``train_settings`` are further
    :class:`~pyro_gen.config.TrainConfig` fields (``batch_size``, ``lr``, ``device``, ...).
    Settings left out take the family's defaults, as on the command line. ``binarize`` is
    ``"dynamic"``, ``"static"``, ``None`` (no binarization) or ``"default"`` (the family's
    choice). A folder that already holds a run is refused unless ``resume`` (continue it) or
    ``overwrite`` (replace it). ``track`` is ``none``, ``tensorboard`` or ``mlflow``
    (``--track``); ``eval_points`` limits the final evaluation to the first N test points.
    Returns the metrics of :func:`run_plan`.
    """
    family = get_family(family_name)
    classes = section_classes(family)
    model_opts, trainer_opts = {}, {}
    trainer_names = {f.name for f in fields(classes["trainer"])} if classes["trainer"] else set()
    model_names = {f.name for f in fields(family.config)} if family.config else None
    train_names = {f.name for f in fields(TrainConfig)}
    for key, value in (options or {}).items():
        if model_names is None or key in model_names:
            model_opts[key] = value
        elif key in trainer_names:
            trainer_opts[key] = value
        elif key in train_names:
            train_settings.setdefault(key, value)
        else:
            raise ValueError(f"unknown option {key!r} for the {family.name} family")
    trainer_opts.update({k: v for k, v in (("estimator", estimator), ("num_particles", num_particles)) if v})
    run = {
        "data": data_spec,
        "out": str(out),
        "k": k,
        "resume": resume,
        "overwrite": overwrite,
        "track": track,
    }
    if eval_points is not None:
        run["eval_points"] = eval_points
    if binarize != "default":
        run["binarize"] = binarize or "none"
    plan = plan_run(
        family_name,
        run=run,
        train={"seed": seed, "epochs": epochs, "steps": steps, **train_settings},
        trainer=trainer_opts,
        model=model_opts,
    )
    return run_plan(plan, out=out, progress=progress)


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    k: int | None = None,
    points: int | None = None,
    device: str | None = None,
    seed: int | None = None,
    progress: bool | None = True,
) -> dict[str, Any]:
    """Evaluate the trained model of a run folder (``pyro-gen evaluate RUN``); return its metrics.

    Loads the model (:func:`load_run`) and the run's data (:func:`load_run_data`) and runs
    :func:`evaluation_step` with ``k`` (default: the run's), the first ``points`` test points
    (default: the run's ``eval_points``, else all) and ``seed`` (default: the run's), on
    ``device`` (``cpu``, ``cuda[:N]``, ``auto``; default: the device of an unfinished
    evaluation in the folder, else the CPU), continuing an interrupted evaluation. The numbers
    are written into the run's ``metrics.json`` (and ``metrics.md``); a run whose ``fit``
    never finished its evaluation gets the whole report (training numbers from the checkpoint,
    figures). ``ValueError`` or ``FileNotFoundError`` with one line for a folder that is not a
    run, a bad setting, or a partial file that cannot be used.
    """
    import torch

    from ..inference.engine import resolve_device, torch_threads

    run_dir = Path(run_dir)
    if k is not None:
        check_positive("--k", k)
    if points is not None:
        check_positive("--points", points)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    config = read_config(run_dir)
    plan = plan_from_dict(config)
    if device is None:
        partial = read_partial(run_dir / PARTIAL)
        device = partial["device"] if partial is not None else "cpu"
    dev = resolve_device(device)
    model, _ = load_run(run_dir)
    data = load_run_data(config)
    if dev is not None and dev.type != "cpu":
        if plan.family.evaluate is not None:
            raise ValueError(f"--device {device}: the {plan.family.name} family evaluates on the CPU")
        if isinstance(model, torch.nn.Module):
            model.to(dev)
    protocol = {"k": k, "points": points, "seed": seed, "progress": progress, "hint": "limit with --points"}
    # the run's thread count (--threads, else the family's), as when fit evaluated it
    with torch_threads(with_budget(plan, data).threads):
        return _evaluate_folder(plan, model, data, run_dir, protocol)


def _evaluate_folder(plan: RunPlan, model, data, run_dir: Path, protocol: dict[str, Any]) -> dict[str, Any]:
    from ..inference.checkpoint import load_checkpoint
    from ..report import write_metrics

    metrics = _read_metrics(run_dir)
    if metrics is None:  # fit never got to write its metrics: the whole report, as fit writes it
        train = with_budget(plan, data)
        state = load_checkpoint(run_dir / CHECKPOINT) if (run_dir / CHECKPOINT).is_file() else None
        if state is None:
            raise FileNotFoundError(
                f"{run_dir} holds no {CHECKPOINT} and no {METRICS}: evaluate a trained run"
            )
        result = result_from_checkpoint(plan, model, state, train, data, run_dir / CHECKPOINT)
        tracker = open_tracker(plan.run.track, run_dir, resume=True)
        if tracker is None:
            return _finish(plan, model, data, run_dir, result, **protocol)
        with tracker:
            return _finish(plan, model, data, run_dir, result, tracker=tracker, **protocol)
    metrics.update(
        evaluation_step(plan, model, data, run_dir, train_elbo="train_elbo" not in metrics, **protocol)
    )
    write_metrics(metrics, run_dir)
    tracker = open_tracker(plan.run.track, run_dir, resume=True)
    if tracker is None:
        _publish(run_dir, metrics, None)
    else:
        with tracker:
            _publish(run_dir, metrics, tracker)
    return metrics
