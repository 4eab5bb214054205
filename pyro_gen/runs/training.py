"""Training a plan: its data, its budget, its trainer through the engine, and resuming from a checkpoint.

A resumed run whose checkpoint is already at the requested final step is not trained again:
:func:`finished_checkpoint` finds it, :func:`restore_model` and :func:`result_from_checkpoint`
give back the model and the ``FitResult`` that training left.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from .evaluation import device_of
from .plan import CHECKPOINT, HISTORY, RunPlan


def load_plan_data(plan: RunPlan):
    """Return the :class:`~pyro_gen.data.DataSplit` a run of ``plan`` trains on: the run's data
    set (binarized as the plan says), prepared by the family's ``prepare`` hook."""
    return _prepare(plan, _load_split(plan))


def _load_split(plan: RunPlan):
    from ..data import load_data

    binarize = None if plan.run.binarize == "none" else plan.run.binarize
    return load_data(plan.run.data, binarize=binarize, seed=plan.train.seed or 0)


def _prepare(plan: RunPlan, data):
    if plan.family.prepare is None:
        return data
    return plan.family.prepare(data, plan.model, plan.run.data, plan.train.seed or 0)


def with_budget(plan: RunPlan, data) -> TrainConfig:
    """Return the plan's training settings with what the data decides filled in: the family's
    budget (when neither epochs nor steps are set), its thread count and ``checkpoint_every``."""
    train = plan.train
    if train.epochs is None and train.steps is None:
        budget = plan.family.budget(data) if plan.family.budget is not None else {"epochs": 10.0}
        budget = {k: v for k, v in budget.items() if k not in plan.given}
        train = dataclasses.replace(train, **budget)
    if train.threads is None and plan.family.threads is not None:
        train = dataclasses.replace(train, threads=plan.family.threads(data))
    if train.checkpoint_every is None:
        n = _training_rows(train, data)
        train = dataclasses.replace(train, checkpoint_every=max(1, n // min(train.batch_size, n)))
    return train


def _estimator(plan: RunPlan) -> str:
    est = plan.trainer.estimator if plan.trainer is not None else None
    if est:
        return est
    default = plan.family.default_estimator
    return default(plan.model) if callable(default) else default


def train_plan(
    plan: RunPlan,
    model,
    data,
    train: TrainConfig,
    out: Path,
    progress: bool | None,
    callbacks=(),
    row_callbacks=(),
):
    """Train ``model`` on ``data`` with the plan's trainer through the engine, checkpointing to
    ``out/checkpoint.pt`` (resumed from there with ``--resume``); return the ``FitResult``.

    ``callbacks`` get the engine's per-step :class:`~pyro_gen.inference.objective.StepInfo`,
    ``row_callbacks`` each history row as it is logged (the trackers' feed); a family with a
    training loop of its own (``trainer="custom"``) gets ``callbacks`` only."""
    from ..inference.engine import train as run_engine

    family = plan.family
    train = dataclasses.replace(train, progress=progress)
    ckpt = out / CHECKPOINT
    resume = None
    if plan.run.resume:
        if not ckpt.is_file():
            raise ValueError(f"--resume: {ckpt} does not exist")
        resume = ckpt
    common = {
        "test_data": data.test,
        "transform": data.batch_transform,
        "checkpoint": ckpt,
        "resume": resume,
        "callbacks": callbacks,
    }
    seed = train.seed or 0
    if family.trainer == "svi":
        from ..inference.svi import SVIObjective

        guide = family.guide(model, plan.model) if family.guide is not None else None
        objective = SVIObjective(
            model,
            guide,
            estimator=_estimator(plan),
            num_particles=plan.trainer.num_particles,
            eval_particles=plan.trainer.eval_particles,
            svi_config=plan.trainer,
        )
        return run_engine(objective, data.train, train, **common, row_callbacks=row_callbacks)
    if family.trainer == "adversarial":
        from ..inference.adversarial import AdversarialObjective

        monitor = None
        if family.monitor is not None:

            def monitor(gan):
                return family.monitor(gan, data, plan.model, seed)

        objective = AdversarialObjective(model, plan.trainer, eval_fn=monitor)
        return run_engine(objective, data.train, train, **common, row_callbacks=row_callbacks)
    if family.trainer == "loss":
        from ..inference.loss import LossObjective

        objective = LossObjective(model, estimator=_estimator(plan))
        return run_engine(objective, data.train, train, **common, row_callbacks=row_callbacks)
    # a custom trainer hands gradient training to the engine (with these checkpoints) and
    # refuses --resume for algorithms that keep none
    return family.train(model, data, plan.model, train, plan.given, **common)


def _training_rows(train: TrainConfig, data) -> int:
    """Return the rows the engine trains on: the training set less the ``--validation`` rows."""
    return max(1, int(data.train.shape[0]) - (train.validation or 0))


def _requested_steps(train: TrainConfig, data) -> int:
    """Return the optimizer steps the engine will train to for ``train`` on ``data`` (as it counts them)."""
    import torch.distributed as dist

    from ..inference.engine import total_steps_for

    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    n_local = max(1, _training_rows(train, data) // world)
    per_epoch = max(1, n_local // min(train.batch_size, n_local))
    return total_steps_for(train.epochs, train.steps, per_epoch)


def finished_checkpoint(plan: RunPlan, out: Path, data, train: TrainConfig) -> dict[str, Any] | None:
    """Return the checkpoint of a resumed run whose training is already at the requested final
    step (None otherwise, or without a checkpoint: the engine says what is wrong)."""
    from ..inference.checkpoint import load_checkpoint

    if not plan.run.resume or not (out / CHECKPOINT).is_file():
        return None
    state = load_checkpoint(out / CHECKPOINT)
    loop = state.get("loop") or {}
    if int(loop.get("step", -1)) != _requested_steps(train, data):
        return None
    return state


def restore_model(plan: RunPlan, run_dir: Path, model: Any, data, state: dict[str, Any] | None = None) -> Any:
    """Return the trained model of ``run_dir``: the family's ``load`` hook, else ``model`` with the
    checkpoint's module state and param store (``state``: the checkpoint, when already read)."""

    from ..inference.checkpoint import load_checkpoint, restore_weights

    family = plan.family
    if family.load is not None:
        return family.load(run_dir, plan.model, data)
    state = state if state is not None else load_checkpoint(run_dir / CHECKPOINT)
    restore_weights(model, state, run_dir / CHECKPOINT)
    return model


def result_from_checkpoint(
    plan: RunPlan, model: Any, state: dict[str, Any], train: TrainConfig, data, ckpt: Path
):
    """Return the :class:`~pyro_gen.inference.FitResult` a finished training left in its checkpoint."""
    import torch

    from ..inference.result import FitResult

    loop = state["loop"]
    history = list(state.get("history") or [])
    written = read_history(ckpt.parent / HISTORY)
    if written and written[-1].get("step") == loop["step"] and len(written) >= len(history):
        history = written  # with the final row a checkpoint keeps out when it ends between log rows
    n_local = max(1, _training_rows(train, data))
    per_epoch = max(1, n_local // min(train.batch_size, n_local))
    return FitResult(
        model=model,
        history=history,
        steps=int(loop["step"]),
        epochs=float(loop.get("batches", loop["step"])) / per_epoch,
        seconds=float(state.get("seconds", 0.0)),
        estimator=str(state.get("estimator") or _estimator(plan) or plan.family.trainer),
        kind=str(state.get("kind") or "svi"),
        checkpoint=ckpt,
        cpu_seconds=float(state.get("cpu_seconds", 0.0)),
        eval_seconds=float(state.get("eval_seconds", 0.0)),
        threads=train.threads or torch.get_num_threads(),
        device=device_of(model),
    )


def read_history(path: Path) -> list[dict[str, Any]]:
    """Return the rows of a ``history.csv`` with their numbers as numbers (empty cells as None)."""
    import csv

    def value(cell: str) -> Any:
        if cell == "":
            return None
        for tp in (int, float):
            try:
                return tp(cell)
            except ValueError:
                pass
        return cell

    try:
        with open(path, newline="") as f:
            return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
