"""Model-family registry, filled from the entry-point group ``pyro_gen.models``.

A family is a :class:`ModelFamily`: how to add its options to the command line, how to build
a model from a data set and those options, and (optionally) a trainer other than SVI.
Third-party packages register theirs exactly as pyro-gen registers the VAE:

    [project.entry-points."pyro_gen.models"]
    mymodel = "my_package.family:FAMILY"
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "pyro_gen.models"


@dataclass(frozen=True)
class ModelFamily:
    """A registered family.

    ``build(data, options) -> model`` makes an untrained model for a
    :class:`~pyro_gen.data.DataSplit` and a dict of options (the parsed CLI flags).
    ``add_arguments(parser)`` adds the family's flags. ``train(model, data, options, out)``
    (optional) replaces the SVI loop and must return a :class:`~pyro_gen.inference.FitResult`.
    ``evaluate(model, data, options)`` (optional) returns extra test metrics.
    ``load(run_dir, config) -> model`` (optional) rebuilds a trained model from a run folder;
    without it the model is rebuilt with ``build`` and its ``checkpoint.pt`` module state.
    ``default_estimator`` names the ELBO used by the SVI loop.
    """

    name: str
    summary: str
    build: Callable[[Any, dict], Any]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    train: Callable[..., Any] | None = None
    evaluate: Callable[..., dict] | None = None
    load: Callable[..., Any] | None = None
    default_estimator: str = "reparam"
    extra: dict = field(default_factory=dict)


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
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            fam = ep.load()
        except Exception as e:  # a broken plug-in must not break the CLI for everyone
            import warnings

            warnings.warn(f"pyro-gen: could not load model family {ep.name!r} ({e})", stacklevel=2)
            continue
        if isinstance(fam, ModelFamily) and fam.name not in _REGISTRY:
            _REGISTRY[fam.name] = fam
    if "vae" not in _REGISTRY:  # running from a source tree that was never pip-installed
        from .families.vae import VAE_FAMILY

        _REGISTRY["vae"] = VAE_FAMILY


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
