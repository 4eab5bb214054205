"""Run plans: a family's settings as one :class:`RunPlan`, and ``config.json`` read back into one.

The layers, lowest first: the settings dataclasses' defaults, the family's ``defaults``, the
user's settings. ``plan_run`` with ``resume`` continues the run of a folder with new training
settings; ``plan_from_dict`` rebuilds the plan a ``config.json`` holds.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import AdversarialConfig, RunConfig, SVIConfig, TrainConfig, build, to_dict
from ..registry import ModelFamily, get_family

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.json"
HISTORY = "history.csv"
SECTIONS = ("run", "train", "trainer", "model")
DATA_FILE_SUFFIXES = (".npy", ".npz", ".csv", ".pt")  # those of pyro_gen.data.files (no torch here)


def data_spec(spec: str) -> str:
    """Return the data spec ``spec`` with a data file's path made absolute (other specs as given).

    A run folder then loads its data again from wherever it is run; ``file:PATH`` and
    ``PATH.npy|.npz|.csv|.pt`` name files.
    """
    text = str(spec)
    path = text.removeprefix("file:")
    if text.startswith("file:") or path.lower().endswith(DATA_FILE_SUFFIXES):
        return str(Path(path).expanduser().resolve())
    return text


def family_named(name: str) -> ModelFamily:
    """Return the registered family ``name``; the ``user`` family is registered on first use."""
    if name == "user":
        from ..families.user import ensure_registered

        ensure_registered()
    return get_family(name)


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
    family = family_named(family_name)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown settings section(s): {', '.join(sorted(unknown))}")
    classes = section_classes(family)
    honoured = set(trainer_fields(family))
    user = {s: {k: v for k, v in (sections.get(s) or {}).items() if v is not None} for s in SECTIONS}
    if "data" in user["run"]:
        user["run"]["data"] = data_spec(user["run"]["data"])
    if family.name == "user" and user["run"].get("k") not in (None, RunConfig().k):
        raise ValueError("--k: the user family scores held-out data with --eval-samples draws; give that")
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
    if hasattr(objs["trainer"], "beta1") and getattr(objs["train"], "adam_betas", None) is not None:
        raise ValueError(
            f"--adam-betas: the {family.name} family sets both players' Adam betas with --beta1 and --beta2; "
            "give those instead"
        )
    estimator = getattr(objs["trainer"], "estimator", None)
    if estimator:
        from ..inference.estimators import make_estimator

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
    if "data" in user["run"]:
        user["run"]["data"] = data_spec(user["run"]["data"])
    if family_name == "user" and "target" in user["model"]:
        from ..families.user import normalize_target

        user["model"]["target"] = normalize_target(user["model"]["target"])
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
