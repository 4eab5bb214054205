"""Model-family registry, filled from the entry-point group ``pyro_gen.models``.

A family is a declaration (:class:`ModelFamily`): its settings (a config dataclass, from
which the command line's flags are generated), how to build a model from a data set and
those settings, which trainer runs it, its training defaults and budget, and optional hooks.
Families hold no loops and write no files: :mod:`pyro_gen.runs` trains them with the
engine and :func:`pyro_gen.report.report` writes what a person opens. Third-party packages
register theirs exactly as pyro-gen registers its own:

    [project.entry-points."pyro_gen.models"]
    mymodel = "my_package.family:FAMILY"

This module imports no family and no torch; entry points are loaded on first use.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "pyro_gen.models"
TRAINERS = ("svi", "adversarial", "loss", "custom")


@dataclass(frozen=True)
class ModelFamily:
    """A registered family of models.

    * ``build(data, config) -> model``: an untrained model for a
      :class:`~pyro_gen.data.DataSplit` and the family's ``config`` object (an instance of
      the dataclass ``config``; a plain dict of the parsed flags when ``config`` is None).
    * ``config``: the family's settings dataclass; one flag per field.
    * ``trainer``: ``"svi"`` (the engine with an SVI objective: model/guide pairs and
      maximum-likelihood models), ``"adversarial"`` (the engine with the two-player game),
      ``"loss"`` (the engine with the model's own ``loss``), or ``"custom"`` (the ``train``
      hook: algorithms that are not gradient training, such as EM and NUTS).
    * ``default_estimator``: the ELBO estimator when none is given (or a function of the config).
    * ``trainer_settings``: which fields of the trainer's settings (``SVIConfig``:
      ``estimator``, ``num_particles``, ``eval_particles``) the family honours; only those
      become flags. ``None`` means all of them.
    * ``defaults``: the family's own defaults for training and run settings (``batch_size``,
      ``lr``, ``binarize``, ``loss``...), applied below anything the user gives.
    * ``budget(data) -> dict``: ``{"epochs": E}`` or ``{"steps": S}`` when the user gives
      neither (default: 10 epochs).
    * ``threads(data) -> int | None``: torch threads while training unless given.
    * ``prepare(data, config, spec, seed) -> DataSplit``: the split the family trains on (e.g.
      grey levels, or a label column appended); ``spec`` is the ``--data`` string, ``seed`` the run's.
    * ``guide(model, config)``: the guide to pair with the model (default: ``model.guide``).
    * ``train(model, data, config, train_config, given, *, checkpoint, resume, callbacks, ...)
      -> FitResult``: the ``custom`` trainer; ``given`` is the set of training settings the
      user gave explicitly, so that one the algorithm cannot honour is refused; gradient
      training inside it runs on the engine with ``checkpoint``/``resume``/``callbacks``.
    * ``honours(config) -> (set | None, why)``: the training settings this configuration can
      use (None: all) and what limits them (e.g. ``"--method em"``); others given by the user
      are refused before anything is written.
    * ``evaluate(model, data, config, seed[, k]) -> dict``: metrics beyond :func:`pyro_gen.evaluate`
      (a hook with a ``k`` parameter gets the run's importance samples).
    * ``monitor(model, data, config, seed) -> dict``: numbers logged during training at each
      held-out evaluation (e.g. a GAN's mode coverage).
    * ``load(run_dir, config, data) -> model``: rebuild a trained model (default: ``build``
      and the checkpoint's module state).
    * ``state(model) -> dict``: what to save in ``state_file`` for models the engine does not
      checkpoint (e.g. a fitted mixture).
    * Declared capabilities, read by comparisons: ``likelihood`` (``"exact"``, ``"bound"``,
      ``"estimate"`` or None), ``role``, ``sample_observations`` (sample through the
      likelihood), ``budgets`` (named training budgets), ``compare_options`` (settings used
      when compared with other families).
    """

    name: str
    summary: str
    build: Callable[..., Any]
    config: type | None = None
    trainer: str = "svi"
    trainer_settings: tuple[str, ...] | None = None
    default_estimator: str | Callable[[Any], str] = "reparam"
    defaults: dict[str, Any] = field(default_factory=dict)
    budget: Callable[[Any], dict] | None = None
    threads: Callable[[Any], int | None] | None = None
    prepare: Callable[..., Any] | None = None
    guide: Callable[..., Any] | None = None
    train: Callable[..., Any] | None = None
    honours: Callable[[Any], tuple[set[str] | None, str]] | None = None
    evaluate: Callable[..., dict] | None = None
    monitor: Callable[..., dict] | None = None
    load: Callable[..., Any] | None = None
    state: Callable[[Any], dict] | None = None
    state_file: str | None = None
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    likelihood: str | None = None
    role: str = "model"
    sample_observations: bool = False
    budgets: dict[str, dict] = field(default_factory=dict)
    compare_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise ValueError(f"family {self.name!r}: trainer must be one of {TRAINERS}, got {self.trainer!r}")
        if self.trainer == "custom" and self.train is None:
            raise ValueError(f"family {self.name!r}: a custom trainer needs train=")


_REGISTRY: dict[str, ModelFamily] = {}
_LOADED = False


def register(family: ModelFamily, *, overwrite: bool = False) -> ModelFamily:
    """Add ``family`` to the registry (programmatic alternative to an entry point); returns it."""
    if not isinstance(family, ModelFamily):
        raise ValueError(f"expected a ModelFamily, got {type(family).__name__}")
    if family.name in _REGISTRY and not overwrite and _REGISTRY[family.name] is not family:
        raise ValueError(f"a model family named {family.name!r} is already registered")
    _REGISTRY[family.name] = family
    return family


def _load_entry_points() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    eps = list(entry_points(group=ENTRY_POINT_GROUP))
    if not any(ep.name == "vae" for ep in eps):  # a source tree that was never pip-installed
        from importlib.metadata import EntryPoint

        eps.append(EntryPoint("vae", "pyro_gen.families.vae:VAE_FAMILY", ENTRY_POINT_GROUP))
    for ep in eps:
        try:
            fam = ep.load()
        except Exception as e:  # a broken plug-in must not break the CLI for everyone
            import warnings

            warnings.warn(f"pyro-gen: could not load model family {ep.name!r} ({e})", stacklevel=2)
            continue
        if isinstance(fam, ModelFamily) and fam.name not in _REGISTRY:
            _REGISTRY[fam.name] = fam


def families() -> dict[str, ModelFamily]:
    """Return every registered family by name (entry points loaded on first call)."""
    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def get_family(name: str) -> ModelFamily:
    """Return the family called ``name``; ``ValueError`` listing the known ones otherwise."""
    fams = families()
    if name not in fams:
        raise ValueError(f"unknown model family {name!r}; registered: {', '.join(fams) or 'none'}")
    return fams[name]
