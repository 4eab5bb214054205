"""Run folders: plan a run from the settings, fit a registered family with the engine, evaluate, report.

A run folder holds ``config.json`` (the :class:`RunPlan`: run, training, trainer and model
settings, enough to re-run it with ``pyro-gen fit --config RUN/config.json``),
``metrics.json``, ``history.csv``, ``checkpoint.pt`` and the figures :func:`pyro_gen.report.report`
writes. Families only declare; this package is the one place that wires them to the engine.

Evaluation is a step of its own (:func:`evaluation_step`, used by ``fit`` after training and
by ``pyro-gen evaluate RUN`` through :func:`evaluate_run`): it saves its per-point results
block by block in ``evaluation.partial.json``, so that an interrupted evaluation continues
where it stopped, with the numbers an uninterrupted one gives.

The modules, lowest first: ``plan`` (settings -> :class:`RunPlan`, ``config.json``),
``evaluation`` (the resumable evaluation step), ``training`` (a plan's data, budget and
trainer; resuming from a checkpoint), ``folder`` (a run folder's files, ``load_run``,
``sample_run``), ``tracking`` (TensorBoard and MLflow trackers fed by the engine's row
callbacks, ``--track``) and ``run`` (``run_plan``, ``run_fit``, ``evaluate_run``). Every run
folder also gets a self-contained ``index.html``.
"""

from .evaluation import PARTIAL, PARTIAL_FORMAT, evaluation_step, model_fingerprint
from .folder import RUN_FILES, load_run, load_run_data, sample_run
from .plan import (
    CHECKPOINT,
    CONFIG,
    HISTORY,
    METRICS,
    SECTIONS,
    RunPlan,
    plan_from_dict,
    plan_run,
    read_config,
    section_classes,
    trainer_config_class,
    trainer_fields,
)
from .run import evaluate_run, run_fit, run_plan
from .tracking import TRACK_DIRS, MLflowTracker, TensorBoardTracker, Tracker, open_tracker

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "HISTORY",
    "METRICS",
    "PARTIAL",
    "PARTIAL_FORMAT",
    "RUN_FILES",
    "SECTIONS",
    "TRACK_DIRS",
    "MLflowTracker",
    "RunPlan",
    "TensorBoardTracker",
    "Tracker",
    "evaluate_run",
    "evaluation_step",
    "load_run",
    "load_run_data",
    "model_fingerprint",
    "open_tracker",
    "plan_from_dict",
    "plan_run",
    "read_config",
    "run_fit",
    "run_plan",
    "sample_run",
    "section_classes",
    "trainer_config_class",
    "trainer_fields",
]
