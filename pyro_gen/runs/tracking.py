"""Experiment tracking: a run's numbers, settings and figures fed to TensorBoard or MLflow.

``pyro-gen fit FAMILY --track tensorboard`` writes event files to ``RUN/tensorboard``
(``tensorboard --logdir RUN/tensorboard``); ``--track mlflow`` writes a local MLflow file
store to ``RUN/mlruns`` (``mlflow ui --backend-store-uri file://.../RUN/mlruns``). Both work
offline: nothing is sent anywhere.

A :class:`Tracker` is fed by the engine's row callbacks: every history row (the means of the
logged losses since the last row, held-out numbers, the learning rate, training seconds) is
logged at its cumulative optimizer step, as are the rows of a gradient-variance recorder
passed among the callbacks (:class:`~pyro_gen.inference.GradientVarianceRecorder`). When the
run ends it logs the final metrics (``final/<name>`` at the last step), the figures (images in
TensorBoard, artifacts in MLflow) and the run's settings (a text table in TensorBoard, params
in MLflow). A resumed run continues the same folder or MLflow run: a tracker reads the steps
its store already holds and never logs a (name, step) pair twice, so the steps keep increasing.

Outside a run folder a tracker feeds from the engine directly::

    recorder = GradientVarianceRecorder(model, "reparam", batch, every=100)
    with open_tracker("tensorboard", "runs/mine") as tracker:
        tracker.watch([recorder])
        result = fit(model, data, steps=1000, callbacks=[recorder, tracker])
        tracker.log_rows(result.history)
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

TRACK_DIRS = {"tensorboard": "tensorboard", "mlflow": "mlruns"}
"""The folder inside a run folder that each tracker writes (``--track`` value -> name)."""

EXPERIMENT = "pyro-gen"
"""The MLflow experiment every run is logged under (one per ``RUN/mlruns`` store)."""

_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow-skinny")}
_TIME_KEYS = ("seconds", "cpu_seconds", "eval_seconds")
# sample-quality numbers a monitor adds to evaluated rows (the adversarial family's mode metrics)
_SAMPLE_KEYS = ("modes_captured", "num_modes", "high_quality_share", "kl_to_uniform")


def metric_tag(key: str) -> str:
    """Return the tracker name of a history key: ``heldout/<key>`` for held-out numbers
    (``test_*``), ``samples/<key>`` for the mode metrics of generated samples, ``optim/lr``,
    ``time/<key>`` for the seconds columns, ``progress/epoch``, and ``train/<key>`` for
    everything else the objective logs."""
    if key.startswith("test_"):
        return f"heldout/{key}"
    if key in _SAMPLE_KEYS:
        return f"samples/{key}"
    if key == "lr":
        return "optim/lr"
    if key in _TIME_KEYS:
        return f"time/{key}"
    if key == "epoch":
        return "progress/epoch"
    return f"train/{key}"


def _number(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None for anything else (text, None, NaN, bools)."""
    if isinstance(value, bool) or value is None:
        return None
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Return a nested settings dict as ``{"section.name": text}``: numbers and strings as
    they print, lists and other values as compact JSON, None as ``"None"``."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, name + "."))
        elif isinstance(value, str | int | float | bool) or value is None:
            flat[name] = str(value)
        else:
            flat[name] = json.dumps(value, default=str)
    return flat


def check_tracker(kind: str | None) -> None:
    """Refuse (one-line ``ValueError``) a tracker that is unknown or whose package is not
    installed; ``none`` (or None) passes. Returns nothing."""
    if kind in (None, "", "none"):
        return
    if kind not in TRACK_DIRS:
        raise ValueError(f"--track must be one of none, {', '.join(TRACK_DIRS)}, got {kind!r}")
    module, package = _PACKAGES[kind]
    try:
        importlib.import_module(module)
    except ImportError:
        raise ValueError(
            f"--track {kind} needs the {package} package, which is not installed: "
            f"pip install 'pyro-gen[track]' (or pip install {package})"
        ) from None


class Tracker:
    """Feeds one run to a tracking store; subclasses write one backend.

    Every ``log_*`` method skips a (name, step) pair the store already holds, so a resumed
    run never logs a step twice. Use it as a context manager or call :meth:`close`.
    """

    kind = "none"

    def __init__(self, run_dir: str | os.PathLike, *, resume: bool = False):
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.folder = self.run_dir / TRACK_DIRS[self.kind]
        if not resume and self.folder.exists():  # a fresh run starts a fresh log
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.seen: dict[str, set[int]] = {}
        self.recorders: list[Any] = []
        self._recorded = 0
        self.logged = 0  # values written by this tracker since it opened (numbers, texts and images)

    # -- what the run feeds ------------------------------------------------------------

    def watch(self, callbacks: Iterable[Any]) -> None:
        """Log the rows of every gradient-variance recorder among ``callbacks`` (objects with a
        ``rows`` list of ``{"step", <group>: {summary}}`` dicts) as ``gradient/<group>/<name>``."""
        self.recorders += [cb for cb in callbacks if isinstance(getattr(cb, "rows", None), list)]

    def __call__(self, info: Any) -> None:
        """Log the gradient-variance rows measured since the last call: a per-step callback of the
        engine (``fit(..., callbacks=[recorder, tracker])``), so rows reach the store as measured."""
        if sum(len(rec.rows) for rec in self.recorders) > self._recorded:
            self._log_recorders()

    def log_row(self, row: Mapping[str, Any]) -> None:
        """Log one history row at its ``step``: every finite number but the step, under
        :func:`metric_tag`; then any new gradient-variance rows. The engine's row callback."""
        step = int(row["step"])
        values = {metric_tag(k): _number(v) for k, v in row.items() if k != "step"}
        self._scalars({k: v for k, v in values.items() if v is not None}, step)
        self._log_recorders()
        self.flush()

    def log_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Log history rows (see :meth:`log_row`), skipping the steps already logged: used at the
        end of a run for trainers that keep their own loop (EM, NUTS) and on resume."""
        for row in rows:
            if row.get("step") is not None:
                step = int(row["step"])
                values = {metric_tag(k): _number(v) for k, v in row.items() if k != "step"}
                self._scalars({k: v for k, v in values.items() if v is not None}, step)
        self._log_recorders()
        self.flush()

    def log_config(self, config: Mapping[str, Any], step: int = 0) -> None:
        """Log the run's settings (the ``config.json`` dict): TensorBoard text, MLflow params."""
        raise NotImplementedError

    def log_final(self, metrics: Mapping[str, Any], figures: Sequence[str | os.PathLike], step: int) -> None:
        """Log the final metrics (numbers as ``final/<name>`` at ``step``, the rest as text or
        tags) and the figures (PNG files) of the finished run."""
        numbers = {f"final/{k}": _number(v) for k, v in metrics.items()}
        self._scalars({k: v for k, v in numbers.items() if v is not None}, step)
        text = {k: v for k, v in metrics.items() if _number(v) is None and v is not None}
        self._final_text(text, step)
        for path in figures:
            path = Path(path)
            if path.suffix == ".png" and path.is_file():
                self._image(f"figures/{path.stem}", path, step)
        self.flush()

    def log_files(self, paths: Iterable[str | os.PathLike]) -> None:
        """Keep copies of the run's files (MLflow artifacts; TensorBoard keeps none)."""

    @property
    def hint(self) -> str:
        """Return the command that opens this store in the tracker's own viewer."""
        return str(self.folder)

    def flush(self) -> None:
        """Write what is buffered to disk."""

    def close(self, failed: bool = False) -> None:
        """Flush and close the store (an MLflow run is marked finished, or failed)."""

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)

    # -- helpers -----------------------------------------------------------------------

    def _new(self, tag: str, step: int) -> bool:
        steps = self.seen.setdefault(tag, set())
        if step in steps:
            return False
        steps.add(step)
        return True

    def _scalars(self, values: Mapping[str, float], step: int) -> None:
        fresh = {k: v for k, v in values.items() if self._new(k, step)}
        if fresh:
            self._write_scalars(fresh, step)
            self.logged += len(fresh)

    def _log_recorders(self) -> None:
        rows = [row for rec in self.recorders for row in rec.rows]
        for row in rows[self._recorded :]:
            values = {
                f"gradient/{group}/{name}": _number(v)
                for group, summary in row.items()
                if isinstance(summary, Mapping)
                for name, v in summary.items()
            }
            self._scalars({k: v for k, v in values.items() if v is not None}, int(row.get("step", 0)))
        self._recorded = len(rows)

    def _write_scalars(self, values: Mapping[str, float], step: int) -> None:
        raise NotImplementedError

    def _image(self, tag: str, path: Path, step: int) -> None:
        raise NotImplementedError

    def _final_text(self, values: Mapping[str, Any], step: int) -> None:
        raise NotImplementedError


def _markdown_table(rows: Mapping[str, str]) -> str:
    lines = ["| name | value |", "|---|---|"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows.items()]
    return "\n".join(lines)


class TensorBoardTracker(Tracker):
    """Event files in ``RUN/tensorboard`` through :class:`torch.utils.tensorboard.SummaryWriter`.

    Numbers are scalars, figures images (``figures/<name>``), the settings and the final
    text-valued metrics Markdown tables (``config``, ``final/text``). A resumed run writes a new
    event file in the same folder; the steps the old files hold are read back first
    (:class:`~tensorboard.backend.event_processing.event_accumulator.EventAccumulator`) and
    skipped.
    """

    kind = "tensorboard"

    def __init__(self, run_dir: str | os.PathLike, *, resume: bool = False):
        super().__init__(run_dir, resume=resume)
        from torch.utils.tensorboard import SummaryWriter

        if resume:
            self.seen = _tensorboard_steps(self.folder)
        self.writer = SummaryWriter(log_dir=str(self.folder))

    @property
    def hint(self) -> str:
        """Return ``tensorboard --logdir RUN/tensorboard``."""
        return f"tensorboard --logdir {self.folder}"

    def log_config(self, config: Mapping[str, Any], step: int = 0) -> None:
        if self._new("config/text_summary", step):
            self.writer.add_text("config", _markdown_table(flatten_config(config)), global_step=step)
            self.logged += 1

    def _write_scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)

    def _final_text(self, values: Mapping[str, Any], step: int) -> None:
        if values and self._new("final/text/text_summary", step):
            flat = flatten_config(values)
            self.writer.add_text("final/text", _markdown_table(flat), global_step=step)
            self.logged += 1

    def _image(self, tag: str, path: Path, step: int) -> None:
        if not self._new(tag, step):
            return
        import numpy as np
        from PIL import Image

        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB"))
        self.writer.add_image(tag, pixels, global_step=step, dataformats="HWC")
        self.logged += 1

    def flush(self) -> None:
        self.writer.flush()

    def close(self, failed: bool = False) -> None:
        self.writer.close()


def _tensorboard_steps(folder: Path) -> dict[str, set[int]]:
    """Return ``{tag: steps}`` of the scalars, images and texts the event files in ``folder`` hold."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    seen: dict[str, set[int]] = {}
    for tag in tags.get("scalars", []):
        seen[tag] = {e.step for e in acc.Scalars(tag)}
    for tag in tags.get("images", []):
        seen[tag] = {e.step for e in acc.Images(tag)}
    for tag in tags.get("tensors", []):
        seen[tag] = {e.step for e in acc.Tensors(tag)}
    return seen


class MLflowTracker(Tracker):
    """A local MLflow file store in ``RUN/mlruns`` (``file:`` URI), written with
    :class:`mlflow.tracking.MlflowClient`; no server.

    Numbers are metrics, the settings params (``run.data``, ``train.lr``, ...), text-valued
    final metrics tags (``final.<name>``), figures and the run's files artifacts. A resumed run
    continues the newest run of the store (its metric histories are read back and the steps
    they hold skipped; params already set keep their first value, the current settings are in
    the ``config.json`` artifact). MLflow 3 keeps its file store in maintenance mode behind the
    ``MLFLOW_ALLOW_FILE_STORE`` switch, which is set to ``true`` unless already set.
    """

    kind = "mlflow"

    def __init__(self, run_dir: str | os.PathLike, *, resume: bool = False):
        super().__init__(run_dir, resume=resume)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.uri = self.folder.resolve().as_uri()
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            exp = self.client.get_experiment_by_name(EXPERIMENT)
            exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(EXPERIMENT)
            old = self.client.search_runs([exp_id], max_results=1, order_by=["attributes.start_time DESC"])
        except MlflowException as e:
            raise ValueError(f"--track mlflow: {self.uri}: {str(e).splitlines()[0]}") from None
        if resume and old:
            self.run_id = old[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            data = self.client.get_run(self.run_id).data
            self.params = dict(data.params)
            for key in data.metrics:
                self.seen[key] = {m.step for m in self.client.get_metric_history(self.run_id, key)}
        else:
            run = self.client.create_run(exp_id, run_name=self.run_dir.name)
            self.run_id, self.params = run.info.run_id, {}

    @property
    def hint(self) -> str:
        """Return ``mlflow ui --backend-store-uri file:///.../RUN/mlruns``."""
        return f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {self.uri}"

    def log_config(self, config: Mapping[str, Any], step: int = 0) -> None:
        from mlflow.entities import Param

        params = [Param(k, v[:6000]) for k, v in flatten_config(config).items() if k not in self.params]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        self.params.update({p.key: p.value for p in params})
        self.logged += len(params)

    def _write_scalars(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def _final_text(self, values: Mapping[str, Any], step: int) -> None:
        from mlflow.entities import RunTag

        tags = [RunTag(f"final.{k}", v[:5000]) for k, v in flatten_config(values).items()]
        if tags:
            self.client.log_batch(self.run_id, tags=tags)
            self.logged += len(tags)

    def _image(self, tag: str, path: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path="figures")
        self.logged += 1

    def log_files(self, paths: Iterable[str | os.PathLike]) -> None:
        for path in paths:
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path))

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


TRACKERS: dict[str, type[Tracker]] = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker}


def open_tracker(kind: str, run_dir: str | os.PathLike, *, resume: bool = False) -> Tracker | None:
    """Return the tracker ``kind`` (``none``, ``tensorboard``, ``mlflow``) writing into ``run_dir``
    (None for ``none``); ``resume`` continues what the folder holds. A ``ValueError`` with one
    line for an unknown kind or a tracker package that is not installed."""
    check_tracker(kind)
    if kind in (None, "", "none"):
        return None
    return TRACKERS[kind](run_dir, resume=resume)


__all__ = [
    "EXPERIMENT",
    "TRACKERS",
    "TRACK_DIRS",
    "MLflowTracker",
    "TensorBoardTracker",
    "Tracker",
    "check_tracker",
    "flatten_config",
    "metric_tag",
    "open_tracker",
]
