"""Run folders: plan a run from the settings, fit a registered family with the engine, evaluate, report.

A run folder holds ``config.json`` (the :class:`RunPlan`: run, training, trainer and model
settings, enough to re-run it with ``pyro-gen fit --config RUN/config.json``),
``metrics.json``, ``history.csv``, ``checkpoint.pt`` and the figures :func:`pyro_gen.report.report`
writes. Families only declare; this module is the one place that wires them to the engine.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .config import AdversarialConfig, RunConfig, SVIConfig, TrainConfig, build, to_dict
from .registry import ModelFamily, get_family

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
SECTIONS = ("run", "train", "trainer", "model")


def trainer_config_class(family: ModelFamily) -> type | None:
    """Return the settings dataclass of the family's trainer (SVIConfig, AdversarialConfig, or None)."""
    return {"svi": SVIConfig, "adversarial": AdversarialConfig}.get(family.trainer)


def trainer_fields(family: ModelFamily) -> list[str]:
    """Return the trainer settings the family honours (those become flags)."""
    cls = trainer_config_class(family)
    if cls is None:
        return []
    names = [f.name for f in fields(cls)]
    return names if family.trainer_settings is None else [n for n in names if n in family.trainer_settings]


def section_classes(family: ModelFamily) -> dict[str, type | None]:
    """Return the settings dataclass of each section of a run of ``family``."""
    return {
        "run": RunConfig,
        "train": TrainConfig,
        "trainer": trainer_config_class(family),
        "model": family.config,
    }


@dataclass
class RunPlan:
    """Everything a run of one family needs, as settings objects; ``config.json`` is this serialized.

    ``given`` holds the training settings the user gave explicitly (a custom trainer refuses
    those it cannot honour).
    """

    family: ModelFamily
    run: RunConfig
    train: TrainConfig
    trainer: Any
    model: Any
    given: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as a JSON-ready dict (``family`` and one dict per section)."""
        model = to_dict(self.model) if dataclasses.is_dataclass(self.model) else dict(self.model)
        return {
            "family": self.family.name,
            "run": to_dict(self.run),
            "train": to_dict(self.train),
            "trainer": {k: v for k, v in to_dict(self.trainer).items() if k in trainer_fields(self.family)}
            if self.trainer is not None
            else {},
            "model": model,
            "given": sorted(self.given),
        }


def plan_run(family_name: str, **sections: dict[str, Any] | None) -> RunPlan:
    """Return the :class:`RunPlan` for ``family_name`` from per-section settings.

    ``sections`` are dicts named ``run``, ``train``, ``trainer`` and ``model`` (the user's
    settings; ``None`` values are left at their default). The layers, lowest first: the
    dataclass defaults, the family's ``defaults``, the user's settings. A key that belongs
    to no section, or a trainer setting the family does not honour, raises ``ValueError``.
    """
    run = sections.get("run") or {}
    if run.get("resume") and run.get("out") and (Path(run["out"]) / CONFIG).is_file():
        return _resumed_plan(family_name, Path(run["out"]), sections)
    return _build_plan(family_name, sections)


def _build_plan(family_name: str, sections: dict[str, Any], given: set[str] | None = None) -> RunPlan:
    """Return the plan from per-section settings; ``given`` (default: the train section's keys)
    are the training settings the user chose, checked against what the family honours."""
    family = get_family(family_name)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown settings section(s): {', '.join(sorted(unknown))}")
    classes = section_classes(family)
    honoured = set(trainer_fields(family))
    user = {s: {k: v for k, v in (sections.get(s) or {}).items() if v is not None} for s in SECTIONS}
    bad = sorted(set(user["trainer"]) - honoured)
    if bad:
        what = "has no trainer settings" if not honoured else f"takes only {', '.join(sorted(honoured))}"
        raise ValueError(
            f"{', '.join('--' + b.replace('_', '-') for b in bad)}: the {family.name} family {what}"
        )
    family_defaults: dict[str, dict] = {s: {} for s in SECTIONS}
    for key, value in family.defaults.items():
        for s in SECTIONS:
            cls = classes[s]
            if cls is not None and key in {f.name for f in fields(cls)}:
                family_defaults[s][key] = value
                break
        else:
            raise ValueError(f"family {family.name!r} declares a default for unknown setting {key!r}")
    objs = {}
    for s in SECTIONS:
        cls = classes[s]
        if cls is None:
            if s == "model":
                objs[s] = {**family_defaults[s], **user[s]}
            elif user[s]:
                raise ValueError(f"the {family.name} family takes no {s} settings: {sorted(user[s])}")
            else:
                objs[s] = None
            continue
        objs[s] = build(cls, family_defaults[s], user[s])
    if family.honours is not None:
        usable, why = family.honours(objs["model"])
        chosen = set(user["train"]) if given is None else set(given)
        refused = sorted(chosen - usable) if usable is not None else []
        if refused:
            flags = ", ".join("--" + r.replace("_", "-") for r in refused)
            raise ValueError(f"{flags}: not used by {why} (only gradient training takes them)")
    chosen = set(user["train"]) if given is None else set(given)
    return RunPlan(family, objs["run"], objs["train"], objs["trainer"], objs["model"], chosen)


def _resumed_plan(family_name: str, out: Path, sections: dict[str, dict | None]) -> RunPlan:
    """Return the plan of the run in ``out`` with the user's new training settings applied.

    The model, its trainer and the data are the saved run's: a different value given for one
    of them is refused with one line. Training settings (the budget, the learning rate, ...)
    are applied and recorded; a new budget replaces the saved one (epochs or steps).
    """
    saved = read_config(out)
    if saved.get("family") != family_name:
        raise ValueError(f"--resume: {out} holds a {saved.get('family')} run, not a {family_name} run")
    user = {s: {k: v for k, v in (sections.get(s) or {}).items() if v is not None} for s in SECTIONS}
    merged = {s: dict(saved.get(s) or {}) for s in SECTIONS}
    fixed = [(s, k, v) for s in ("model", "trainer") for k, v in user[s].items()]
    fixed += [("run", k, user["run"][k]) for k in ("data", "binarize") if k in user["run"]]
    for section, key, value in fixed:
        if key in merged[section] and merged[section][key] != value:
            raise ValueError(
                f"--{key.replace('_', '-')} {value}: the run in {out} has {merged[section][key]!r}; "
                "a resumed run keeps its model, trainer and data (use another --out to change them)"
            )
    merged["run"].update(user["run"])
    if "epochs" in user["train"] or "steps" in user["train"]:
        merged["train"].update(epochs=None, steps=None)
    merged["train"].update(user["train"])
    given = set(saved.get("given", [])) | set(user["train"])
    return plan_from_dict({"family": family_name, **merged, "given": sorted(given)})


def plan_from_dict(values: dict[str, Any]) -> RunPlan:
    """Return the plan stored in a ``config.json`` dict (``ValueError`` naming a bad entry)."""
    if not isinstance(values, dict) or "family" not in values or "run" not in values:
        raise ValueError("not a pyro-gen run configuration (it needs 'family' and 'run')")
    plan = _build_plan(values["family"], {s: values.get(s) for s in SECTIONS}, set(values.get("given", [])))
    plan.given = set(values.get("given", []))
    return plan


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Return the dict in a run's ``config.json`` (a folder or the file itself)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is not a run folder (it does not exist)")
    if path.is_dir():
        if not (path / CONFIG).is_file():
            raise FileNotFoundError(f"{path} is not a run folder (no {CONFIG})")
        path = path / CONFIG
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e


def load_run_data(config: dict[str, Any]):
    """Return the :class:`~pyro_gen.data.DataSplit` a run trained on, from its ``config.json`` dict."""
    plan = plan_from_dict(config)
    return _prepare(plan, _load_split(plan))


def _load_split(plan: RunPlan):
    from .data import load_data

    binarize = None if plan.run.binarize == "none" else plan.run.binarize
    return load_data(plan.run.data, binarize=binarize, seed=plan.train.seed or 0)


def _prepare(plan: RunPlan, data):
    if plan.family.prepare is None:
        return data
    return plan.family.prepare(data, plan.model, plan.run.data, plan.train.seed or 0)


def _with_budget(plan: RunPlan, data) -> TrainConfig:
    train = plan.train
    if train.epochs is None and train.steps is None:
        budget = plan.family.budget(data) if plan.family.budget is not None else {"epochs": 10.0}
        budget = {k: v for k, v in budget.items() if k not in plan.given}
        train = dataclasses.replace(train, **budget)
    if train.threads is None and plan.family.threads is not None:
        train = dataclasses.replace(train, threads=plan.family.threads(data))
    if train.checkpoint_every is None:
        n = data.train.shape[0]
        train = dataclasses.replace(train, checkpoint_every=max(1, n // min(train.batch_size, n)))
    return train


def _estimator(plan: RunPlan) -> str:
    est = plan.trainer.estimator if plan.trainer is not None else None
    if est:
        return est
    default = plan.family.default_estimator
    return default(plan.model) if callable(default) else default


def _train(plan: RunPlan, model, data, train: TrainConfig, out: Path, progress: bool | None, callbacks=()):
    from .inference.engine import train as run_engine

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
        from .inference.svi import SVIObjective

        guide = family.guide(model, plan.model) if family.guide is not None else None
        objective = SVIObjective(
            model,
            guide,
            estimator=_estimator(plan),
            num_particles=plan.trainer.num_particles,
            eval_particles=plan.trainer.eval_particles,
        )
        return run_engine(objective, data.train, train, **common)
    if family.trainer == "adversarial":
        from .inference.adversarial import AdversarialObjective

        monitor = None
        if family.monitor is not None:

            def monitor(gan):
                return family.monitor(gan, data, plan.model, seed)

        objective = AdversarialObjective(model, plan.trainer, eval_fn=monitor)
        return run_engine(objective, data.train, train, **common)
    if family.trainer == "loss":
        from .inference.loss import LossObjective

        return run_engine(LossObjective(model), data.train, train, **common)
    # a custom trainer hands gradient training to the engine (with these checkpoints) and
    # refuses --resume for algorithms that keep none
    return family.train(model, data, plan.model, train, plan.given, **common)


def _evaluate(plan: RunPlan, model, data, progress: bool | None) -> dict[str, Any]:
    family, seed = plan.family, plan.train.seed or 0
    if family.evaluate is not None:
        return family.evaluate(model, data, plan.model, seed)
    import torch

    from .evaluation import evaluate
    from .inference.svi import elbo_per_point

    metrics: dict[str, Any] = {}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if callable(getattr(model, "guide", None)):
            train_eval = data.train if data.batch_transform is None else data.batch_transform(data.train)
            metrics["train_elbo"] = elbo_per_point(model.model, model.guide, train_eval)
        ev = evaluate(model, data.test, k=plan.run.k, progress=bool(progress))
    metrics.update(
        test_elbo=ev.elbo,
        test_log_likelihood=ev.log_likelihood,
        test_bits_per_dim=ev.bits_per_dim,
        k=ev.k,
        likelihood_kind=ev.kind,
    )
    metrics.update(ev.metrics)
    return metrics


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
    ``cpu_seconds``, ``ms_per_step``, ``threads``, ``device``, the evaluation
    (``train_elbo``, ``test_elbo``, ``test_log_likelihood`` in nats per data point,
    ``test_bits_per_dim``, ``k`` where they apply) and ``eval_seconds`` (wall seconds of
    the final evaluation). ``callbacks`` are the engine's per-step callbacks; with
    ``evaluate=False`` the final evaluation is skipped (the metrics hold training numbers).
    Under ``torchrun`` every rank trains; only rank 0 writes files and evaluates (other ranks
    return None).
    """
    import time

    import pyro
    import torch
    import torch.distributed as dist

    from .report import report, write_json, write_metrics

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    family = plan.family
    out = Path(out or plan.run.out or f"runs/{family.name}-{plan.run.data.split(':')[0]}")
    _check_out(out, plan.run)
    out.mkdir(parents=True, exist_ok=True)
    seed = plan.train.seed or 0
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    data = _prepare(plan, _load_split(plan))
    model = family.build(data, plan.model)
    train = _with_budget(plan, data)
    config = {**plan.to_dict(), "data_info": _data_info(data)}
    config["run"]["out"] = str(out)
    if rank == 0 and not plan.run.resume:
        write_json(config, out / CONFIG)
    result = _train(plan, model, data, train, out, progress and rank == 0, callbacks)
    if rank == 0 and plan.run.resume:  # the resumed run's budget and settings, once it trained
        write_json(config, out / CONFIG)
    if rank != 0:
        return None
    if family.trainer == "adversarial" and isinstance(model, torch.nn.Module):
        model.cpu()  # (after --device cuda) evaluation, figures and loading work on the CPU
    if family.state is not None:
        torch.save(family.state(model), out / (family.state_file or "model.pt"))
    metrics: dict[str, Any] = {
        "model": family.name,
        "data": plan.run.data,
        "estimator": result.estimator,
        "kind": result.kind,
        "seed": seed,
        "steps": result.steps,
        "epochs": result.epochs,
        "seconds": result.seconds,
        "cpu_seconds": result.cpu_seconds,
        "ms_per_step": result.ms_per_step,
        "step_ms": result.step_ms,
        "train_eval_seconds": result.eval_seconds,
        "threads": result.threads,
        "device": result.device,
    }
    t0 = time.perf_counter()
    if evaluate:
        metrics.update(_evaluate(plan, model, data, progress))
    metrics["eval_seconds"] = time.perf_counter() - t0
    metrics["checkpoint"] = CHECKPOINT if (out / CHECKPOINT).exists() else None
    # the report shows the family's model object, whatever the trainer returned as its model
    written = report(dataclasses.replace(result, model=model), out, data=data, metrics=metrics, seed=seed)
    metrics["figures"] = [p.name for p in written if p.suffix == ".png"]
    write_metrics(metrics, out)
    return metrics


RUN_FILES = (CONFIG, "metrics.json", "metrics.md", "history.csv", CHECKPOINT)


def _check_out(out: Path, run: RunConfig) -> None:
    """Refuse to write over a run by accident; with ``overwrite``, remove the old run's files."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if run.resume or not out.is_dir():
        return
    old = [name for name in RUN_FILES if (out / name).exists()]
    if not old:
        return
    if not run.overwrite:
        raise ValueError(
            f"{out} already holds a run ({', '.join(old)}): --resume to continue it, "
            "--overwrite to replace it, or another --out"
        )
    for name in [*RUN_FILES, *_run_figures(out)]:
        if "/" not in str(name) and (out / name).is_file():
            (out / name).unlink()


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
    **train_settings: Any,
) -> dict[str, Any] | None:
    """Fit ``family_name`` on ``data_spec``, evaluate on the test split, write the run folder.

    ``options`` are the family's settings (its config dataclass fields; trainer settings
    such as a GAN's ``loss`` are accepted there too); ``train_settings`` are further
    :class:`~pyro_gen.config.TrainConfig` fields (``batch_size``, ``lr``, ``device``, ...).
    Settings left out take the family's defaults, as on the command line. ``binarize`` is
    ``"dynamic"``, ``"static"``, ``None`` (no binarization) or ``"default"`` (the family's
    choice). A folder that already holds a run is refused unless ``resume`` (continue it) or
    ``overwrite`` (replace it). Returns the metrics of :func:`run_plan`.
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
    run = {"data": data_spec, "out": str(out), "k": k, "resume": resume, "overwrite": overwrite}
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


def load_run(run_dir: str | os.PathLike) -> tuple[Any, dict]:
    """Rebuild the trained model of a run folder; return ``(model, config)``."""
    import pyro
    import torch

    from .data import DataSplit
    from .inference import load_checkpoint

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    plan = plan_from_dict(config)
    info = config.get("data_info") or {}
    if "dim" not in info:
        raise ValueError(f"{run_dir / CONFIG} has no data_info: not a run folder this version can load")
    dim = int(info["dim"])
    stub = DataSplit(
        name=info.get("name", "data"),
        train=torch.linspace(0.25, 0.75, 2).unsqueeze(1).expand(2, dim).contiguous(),
        test=torch.full((1, dim), 0.5),
        shape=tuple(info["shape"]),
        binarized=bool(info.get("binarized", False)),
        num_levels=info.get("num_levels"),
    )
    family = plan.family
    if family.load is not None:
        return family.load(run_dir, plan.model, stub), config
    model = family.build(stub, plan.model)
    state = load_checkpoint(run_dir / CHECKPOINT)
    if state["module_state"] is not None and isinstance(model, torch.nn.Module):
        try:
            model.load_state_dict(state["module_state"])
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise ValueError(f"{run_dir / CHECKPOINT} does not match the model in {CONFIG} ({first})") from e
        model.eval()
    pyro.get_param_store().set_state(state["param_store"])
    return model, config


def sample_run(run_dir: str | os.PathLike, num: int, out_file: str | os.PathLike, seed: int = 0) -> dict:
    """Draw ``num`` samples from a run's model into ``out_file`` (.npy, shaped like the data).

    Writes a PNG grid (images) or scatter (2-D data) beside it; returns the written paths.
    """
    import numpy as np
    import torch

    from .report import image_grid, plot_2d_samples

    if num <= 0:
        raise ValueError(f"--num must be positive, got {num}")
    out_file = Path(out_file)
    if out_file.suffix != ".npy":
        raise ValueError(f"--out must end in .npy, got {out_file}")
    if out_file.is_dir():
        raise ValueError(f"--out {out_file} is a folder; give a file name ending in .npy")
    figure = out_file.with_suffix(".png")
    if figure.exists() and figure.name in _run_figures(figure.parent):
        raise ValueError(
            f"--out {out_file} would write over the run's own figure {figure}; choose another name"
        )
    model, config = load_run(run_dir)
    if not hasattr(model, "sample"):
        raise ValueError(f"model family {config['family']!r} cannot sample")
    torch.manual_seed(seed)
    x = model.sample(num).detach().cpu()
    shape = tuple(config["data_info"]["shape"])
    arr = x.reshape(num, *shape).numpy()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    np.save(out_file, arr)
    written = {"samples": str(out_file)}
    if len(shape) == 2:
        written["figure"] = str(image_grid(x[:100], out_file.with_suffix(".png"), shape))
    elif shape == (2,):  # the run's test points beside the samples
        written["figure"] = str(plot_2d_samples(load_run_data(config).test, x, figure))
    return written


def _run_figures(folder: Path) -> list[str]:
    """Return the figure names a run folder's ``metrics.json`` lists (none when it is not a run)."""
    try:
        return list(json.loads((folder / "metrics.json").read_text()).get("figures", []))
    except (OSError, ValueError, AttributeError):
        return []
