"""Run folders: plan a run from the settings, fit a registered family with the engine, evaluate, report.

A run folder holds ``config.json`` (the :class:`RunPlan`: run, training, trainer and model
settings, enough to re-run it with ``pyro-gen fit --config RUN/config.json``),
``metrics.json``, ``history.csv``, ``checkpoint.pt`` and the figures :func:`pyro_gen.report.report`
writes. Families only declare; this module is the one place that wires them to the engine.

Evaluation is a step of its own (:func:`evaluation_step`, used by ``fit`` after training and
by ``pyro-gen evaluate RUN`` through :func:`evaluate_run`): it saves its per-point results
block by block in ``evaluation.partial.json``, so that an interrupted evaluation continues
where it stopped, with the numbers an uninterrupted one gives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .config import AdversarialConfig, RunConfig, SVIConfig, TrainConfig, build, to_dict
from .registry import ModelFamily, get_family

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.json"
HISTORY = "history.csv"
PARTIAL = "evaluation.partial.json"
PARTIAL_FORMAT = "pyro-gen-partial-evaluation"
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
    estimator = getattr(objs["trainer"], "estimator", None)
    if estimator:
        from .inference.estimators import make_estimator

        try:
            make_estimator(estimator)  # a name and particle count it knows, before anything is written
        except ValueError as e:
            raise ValueError(f"--estimator: {e}") from None
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


def _say(message: str) -> None:
    """Print one line to stderr, above a progress bar when one is showing."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


def _duration(seconds: float) -> str:
    """Return ``seconds`` as a person reads it: ``"40 s"``, ``"52 min"``, ``"3.1 h"``."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _positive(flag: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{flag} must be a positive integer, got {value!r}")
    return value


def model_fingerprint(model: Any) -> str:
    """Return a SHA-256 hex digest of a model's weights: its module state (an ``nn.Module``),
    else Pyro's param store. Two models with the same weights have the same fingerprint."""
    import pyro
    import torch

    digest = hashlib.sha256(type(model).__name__.encode())
    if isinstance(model, torch.nn.Module):
        items = model.state_dict().items()
    else:
        items = pyro.get_param_store().named_parameters()
    for name, tensor in sorted(items, key=lambda item: item[0]):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _read_partial(path: Path) -> dict[str, Any] | None:
    """Return the saved state of an unfinished evaluation (None without one); ``ValueError``
    naming the file and what is wrong when it cannot be used."""
    if not path.exists():
        return None

    def bad(why: str) -> ValueError:
        return ValueError(
            f"{path} is not a usable partial evaluation ({why}): delete it to start the evaluation over"
        )

    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"{type(e).__name__}: {e}") from e
    if not isinstance(state, dict) or state.get("format") != PARTIAL_FORMAT:
        raise bad("not written by pyro-gen evaluate")
    if state.get("version") != 1:
        raise bad(f"version {state.get('version')!r}, this pyro-gen reads version 1")
    kinds = {"kind": str, "seed": int, "device": str, "model": str, "block_points": int, "blocks": dict}
    for key, tp in kinds.items():
        if not isinstance(state.get(key), tp) or isinstance(state.get(key), bool):
            raise bad(f"{key!r} is missing or not a {tp.__name__}")
    if state["kind"] not in ("importance", "exact") or state["block_points"] < 1:
        raise bad(f"kind {state['kind']!r}, block_points {state['block_points']!r}")
    if not isinstance(state.get("seconds"), int | float) or not isinstance(state.get("k"), int | None):
        raise bad("'seconds' or 'k' is not a number")
    size = state["block_points"]
    for start, block in state["blocks"].items():
        if not start.isdigit() or int(start) % size or not isinstance(block, dict):
            raise bad(f"block {start!r} does not start a block of {size} points")
        values = [block.get("log_likelihood"), block.get("elbo")]
        if not all(isinstance(v, list) and 0 < len(v) <= size for v in values) or len(values[0]) != len(
            values[1]
        ):
            raise bad(f"block {start} has no per-point values")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for v in values for x in v):
            raise bad(f"block {start} holds a value that is not a number")
    return state


def _write_partial(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _device_of(model: Any) -> str:
    import torch

    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device.type
    return "cpu"


def _resumable(
    model: Any,
    test,
    guide: Callable | None,
    kind: str,
    out: Path,
    *,
    k: int,
    seed: int,
    progress: bool | None,
    hint: str,
    say: Callable[[str], None],
    started: float,
):
    """Evaluate the per-point kinds (exact, importance) block by block, saving every block to
    ``out/PARTIAL`` and continuing the blocks saved there; return ``(Evaluation, seconds)``."""
    import torch

    from .evaluation import evaluate
    from .evaluation.likelihood import choose_block_sizes

    path = out / PARTIAL
    n = int(test.shape[0])
    fingerprint, device = model_fingerprint(model), _device_of(model)
    k_used = k if kind == "importance" else None
    state = _read_partial(path)
    if state is not None and state["model"] != fingerprint:
        say(f"discarding {path}: it was saved for other weights than the model's now")
        path.unlink()
        state = None
    if state is not None:
        wanted = {"kind": kind, "k": k_used, "seed": seed, "device": device}
        if any(state[key] != value for key, value in wanted.items()):
            done = sum(len(b["log_likelihood"]) for b in state["blocks"].values())
            k0, seed0, dev0 = state["k"], state["seed"], state["device"]
            raise ValueError(
                f"{path} holds an unfinished {state['kind']} evaluation at k={k0}, seed {seed0} on {dev0} "
                f"({done} points done), not at k={k_used}, seed {seed} on {device}: "
                f"finish it with --k {k0} --seed {seed0} --device {dev0} "
                "(on fit: --k and --seed), or delete the file to start over"
            )
    if state is None:
        if kind == "importance":
            sizes = choose_block_sizes(model, test, k=k, guide=guide).to_metrics()
        else:
            sizes = {"block_points": min(1024, n)}
        state = {
            "format": PARTIAL_FORMAT,
            "version": 1,
            "kind": kind,
            "k": k_used,
            "seed": seed,
            "device": device,
            "model": fingerprint,
            **sizes,
            "points": n,
            "seconds": 0.0,
            "blocks": {},
        }
    size = state["block_points"]
    completed = {
        int(start): (
            torch.tensor(b["log_likelihood"], dtype=torch.float64),
            torch.tensor(b["elbo"], dtype=torch.float64),
        )
        for start, b in state["blocks"].items()
        if int(start) < n and len(b["log_likelihood"]) == min(size, n - int(start))
    }
    done_before = sum(len(v[0]) for v in completed.values())
    before = float(state["seconds"])
    state["points"] = n
    first: list[bool] = []
    what = f"at k={k}" if kind == "importance" else "(exact log-likelihood)"

    def on_block(start: int, ll, elbo, seconds: float) -> None:
        state["blocks"][str(start)] = {"log_likelihood": ll.tolist(), "elbo": elbo.tolist()}
        state["seconds"] = before + time.perf_counter() - started
        _write_partial(path, state)
        if not first:  # the time estimate, from the first block this session computed
            first.append(True)
            remaining = n - done_before - ll.shape[0]
            total = (time.perf_counter() - started) + remaining * seconds / ll.shape[0]
            already = f" ({done_before} done before)" if done_before else ""
            to_go = " to go" if done_before else ""
            say(f"evaluating {n} test points {what}{already}: about {_duration(total)}{to_go} ({hint})")

    if done_before == n:
        say(f"evaluating {n} test points {what}: all {n} were done before")
    blocks = {"batch_size": size}
    if kind == "importance":
        blocks["chunk_size"] = state["block_samples"]
    ev = evaluate(
        model,
        test,
        k=k,
        guide=guide,
        seed=seed,
        progress=bool(progress),
        completed=completed,
        on_block=on_block,
        **blocks,
    )
    # the sizes as they were chosen (by the probe), not as they were passed back in
    ev.metrics.update({key: state[key] for key in state if key.startswith("block_")})
    seconds = before + time.perf_counter() - started
    path.unlink(missing_ok=True)
    return ev, seconds


def evaluation_step(
    plan: RunPlan,
    model: Any,
    data,
    out: str | os.PathLike,
    *,
    k: int | None = None,
    points: int | None = None,
    seed: int | None = None,
    progress: bool | None = True,
    train_elbo: bool = True,
    hint: str = "",
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate the trained ``model`` of a run on the first ``points`` test points; return the metrics.

    One implementation for ``fit`` (after training) and ``pyro-gen evaluate``. ``k`` (default:
    the run's), ``points`` (default: the run's ``eval_points``, else every test point; more than
    there are means all) and ``seed`` (default: the run's) choose the protocol. A family with
    its own ``evaluate`` hook is scored by it (on the first ``points`` test points). Otherwise
    :func:`pyro_gen.evaluate` scores the model: the per-point kinds (exact, importance) block
    by block, each block drawn from its own random stream (from ``seed`` and the block's first
    index), every computed block saved atomically to ``out/evaluation.partial.json``; a saved
    block is reused instead of recomputed, so an interrupted evaluation continues where it
    stopped with the numbers an uninterrupted one gives, whatever ``points`` was then. A
    partial file made at another ``k``, seed, device or kind is refused with one line, one made
    for other weights is discarded with a message, one that cannot be read is refused; the
    file is removed when the evaluation finishes. After the first block computed, one line
    (to ``say``, default stderr) gives the points, ``k`` and the estimated time, then ``hint``.

    Returns ``test_log_likelihood``, ``test_bits_per_dim``, ``test_elbo`` (nats per data
    point, bits per dimension), ``k``, ``likelihood_kind``, ``eval_points`` (points
    evaluated), ``eval_seed``, ``eval_seconds`` (wall seconds of the whole evaluation, earlier
    interrupted sessions included), the block sizes (``block_points``, ``block_samples``,
    ``block_bytes``, ``block_choice``), ``train_elbo`` (with ``train_elbo=True``, for models
    with a guide) and what the family's hook or the sample metrics add.
    """
    import torch

    from .evaluation import evaluate, evaluation_kind
    from .inference.svi import elbo_per_point

    started = time.perf_counter()
    out, family, say = Path(out), plan.family, say or _say
    k = _positive("--k", plan.run.k if k is None else k)
    points = plan.run.eval_points if points is None else points
    if points is not None:
        _positive("--points", points)
    seed = (plan.train.seed or 0) if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    n = int(data.test.shape[0]) if points is None else min(points, int(data.test.shape[0]))
    labels = data.test_labels[:n] if data.test_labels is not None else None
    split = dataclasses.replace(data, test=data.test[:n], test_labels=labels)
    if family.evaluate is not None:
        say(f"evaluating {n} test points with the {family.name} family's own evaluation")
        metrics = dict(family.evaluate(model, split, plan.model, seed))
        metrics.update(eval_points=n, eval_seed=seed, eval_seconds=time.perf_counter() - started)
        return metrics
    guide = family.guide(model, plan.model) if family.guide is not None else None
    kind = evaluation_kind(model, guide)
    metrics: dict[str, Any] = {}
    if train_elbo and callable(getattr(model, "guide", None)) and callable(getattr(model, "model", None)):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            train_eval = data.train if data.batch_transform is None else data.batch_transform(data.train)
            metrics["train_elbo"] = elbo_per_point(model.model, model.guide, train_eval)
    if kind == "samples":
        say(f"evaluating {n} test points by sample metrics")
        ev = evaluate(model, split, k=k, guide=guide, seed=seed, progress=bool(progress))
        seconds = time.perf_counter() - started
    else:
        ev, seconds = _resumable(
            model,
            split.test,
            guide,
            kind,
            out,
            k=k,
            seed=seed,
            progress=progress,
            hint=hint,
            say=say,
            started=started,
        )
    metrics.update(
        test_elbo=ev.elbo,
        test_log_likelihood=ev.log_likelihood,
        test_bits_per_dim=ev.bits_per_dim,
        k=ev.k,
        likelihood_kind=ev.kind,
        eval_points=n,
        eval_seed=seed,
        eval_seconds=seconds,
    )
    metrics.update(ev.metrics)
    return metrics


def _requested_steps(train: TrainConfig, data) -> int:
    """Return the optimizer steps the engine will train to for ``train`` on ``data`` (as it counts them)."""
    import torch.distributed as dist

    from .inference.engine import total_steps_for

    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    n_local = max(1, int(data.train.shape[0]) // world)
    per_epoch = max(1, n_local // min(train.batch_size, n_local))
    return total_steps_for(train.epochs, train.steps, per_epoch)


def _finished_checkpoint(plan: RunPlan, out: Path, data, train: TrainConfig) -> dict[str, Any] | None:
    """Return the checkpoint of a resumed run whose training is already at the requested final
    step (None otherwise, or without a checkpoint: the engine says what is wrong)."""
    from .inference.checkpoint import load_checkpoint

    if not plan.run.resume or not (out / CHECKPOINT).is_file():
        return None
    state = load_checkpoint(out / CHECKPOINT)
    loop = state.get("loop") or {}
    if int(loop.get("step", -1)) != _requested_steps(train, data):
        return None
    return state


def _restore_model(
    plan: RunPlan, run_dir: Path, model: Any, data, state: dict[str, Any] | None = None
) -> Any:
    """Return the trained model of ``run_dir``: the family's ``load`` hook, else ``model`` with the
    checkpoint's module state and param store (``state``: the checkpoint, when already read)."""
    import pyro
    import torch

    from .inference import load_checkpoint

    family = plan.family
    if family.load is not None:
        return family.load(run_dir, plan.model, data)
    state = state if state is not None else load_checkpoint(run_dir / CHECKPOINT)
    if state["module_state"] is not None and isinstance(model, torch.nn.Module):
        try:
            model.load_state_dict(state["module_state"])
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise ValueError(f"{run_dir / CHECKPOINT} does not match the model in {CONFIG} ({first})") from e
        model.eval()
    pyro.get_param_store().set_state(state["param_store"])
    return model


def _result_from_checkpoint(
    plan: RunPlan, model: Any, state: dict[str, Any], train: TrainConfig, data, ckpt: Path
):
    """Return the :class:`~pyro_gen.inference.FitResult` a finished training left in its checkpoint."""
    import torch

    from .inference.result import FitResult

    loop = state["loop"]
    history = list(state.get("history") or [])
    written = _read_history(ckpt.parent / HISTORY)
    if written and written[-1].get("step") == loop["step"] and len(written) >= len(history):
        history = written  # with the final row a checkpoint keeps out when it ends between log rows
    n_local = max(1, int(data.train.shape[0]))
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
        device=_device_of(model),
    )


def _read_history(path: Path) -> list[dict[str, Any]]:
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
    **protocol: Any,
) -> dict[str, Any]:
    """Evaluate (unless ``evaluate=False``), report and write ``metrics.json``; return the metrics."""
    from .report import report, write_metrics

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
    ``cpu_seconds``, ``ms_per_step``, ``threads``, ``device``, the evaluation of
    :func:`evaluation_step` (``train_elbo``, ``test_elbo``, ``test_log_likelihood`` in nats
    per data point, ``test_bits_per_dim``, ``k``, ``eval_points`` where they apply) and
    ``eval_seconds`` (wall seconds of the final evaluation). Before the evaluation starts one
    line on stderr says how many points at what ``k`` and about how long it will take.
    ``callbacks`` are the engine's per-step callbacks; with ``evaluate=False`` the final
    evaluation is skipped (the metrics hold training numbers). A resumed run whose checkpoint
    is already at the requested final step is not trained again: its evaluation is finished
    (continuing a partial one), or, when it holds a finished evaluation of the same protocol,
    its metrics are returned as they are. Under ``torchrun`` every rank trains; only rank 0
    writes files and evaluates (other ranks return None).
    """
    import pyro
    import torch
    import torch.distributed as dist

    from .inference.engine import resolve_device
    from .report import write_history_csv, write_json

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
    finished = _finished_checkpoint(plan, out, data, train)
    if finished is not None:  # trained already: straight to the evaluation
        step = int(finished["loop"]["step"])
        done = _already_evaluated(plan, out, data, step) if rank == 0 and evaluate else None
        if done is not None:
            _say(f"{out}: trained to step {step} and evaluated already ({done['eval_points']} test points)")
            return done
        if rank == 0:
            _say(f"{out}: training is already at step {step}, the requested final step; evaluating")
        model = _restore_model(plan, out, model, data, finished)
        device = resolve_device(train.device)
        if device is not None and isinstance(model, torch.nn.Module):
            model.to(device)
        result = _result_from_checkpoint(plan, model, finished, train, data, out / CHECKPOINT)
    else:
        result = _train(plan, model, data, train, out, progress and rank == 0, callbacks)
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
    return _finish(plan, model, data, out, result, progress=progress, evaluate=evaluate, hint=hint)


RUN_FILES = (CONFIG, METRICS, "metrics.md", HISTORY, CHECKPOINT, PARTIAL)


def _check_out(out: Path, run: RunConfig) -> None:
    """Refuse to write over a run by accident; with ``overwrite``, remove the old run's files."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if run.resume or not out.is_dir():
        return
    old = [name for name in RUN_FILES if (out / name).exists()]
    if old == [CONFIG]:
        # a run that stopped before it saved anything (e.g. refused on its first step): its
        # config.json is written anew, nothing else is there to lose
        return
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
    """Rebuild the trained model of a run folder; return ``(model, config)``.

    ``FileNotFoundError`` when the folder is not a run or holds no checkpoint, ``ValueError``
    when the checkpoint does not fit the model in its ``config.json``.
    """
    import torch

    from .data import DataSplit

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
    if family.load is None and not (run_dir / CHECKPOINT).is_file():
        raise FileNotFoundError(f"{run_dir} holds no {CHECKPOINT}: the run was never trained")
    model = None if family.load is not None else family.build(stub, plan.model)
    return _restore_model(plan, run_dir, model, stub), config


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

    from .inference.checkpoint import load_checkpoint
    from .inference.engine import resolve_device
    from .report import write_metrics

    run_dir = Path(run_dir)
    if k is not None:
        _positive("--k", k)
    if points is not None:
        _positive("--points", points)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    config = read_config(run_dir)
    plan = plan_from_dict(config)
    if device is None:
        partial = _read_partial(run_dir / PARTIAL)
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
    metrics = _read_metrics(run_dir)
    if metrics is None:  # fit never got to write its metrics: the whole report, as fit writes it
        train = _with_budget(plan, data)
        state = load_checkpoint(run_dir / CHECKPOINT) if (run_dir / CHECKPOINT).is_file() else None
        if state is None:
            raise FileNotFoundError(
                f"{run_dir} holds no {CHECKPOINT} and no {METRICS}: evaluate a trained run"
            )
        result = _result_from_checkpoint(plan, model, state, train, data, run_dir / CHECKPOINT)
        return _finish(plan, model, data, run_dir, result, **protocol)
    metrics.update(
        evaluation_step(plan, model, data, run_dir, train_elbo="train_elbo" not in metrics, **protocol)
    )
    write_metrics(metrics, run_dir)
    return metrics
