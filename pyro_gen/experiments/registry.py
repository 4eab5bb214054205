"""Targets of ``pyro-gen compare``: one :class:`Comparison` per target.

A comparison is ``(name, summary, add_arguments(parser), run(args) -> int)``; ``run`` writes a
report folder and prints where it is. The built-in targets are listed here with their flags
(from the torch-free :mod:`pyro_gen.experiments.arguments`) and the module that runs them,
which is imported only when the target runs, so the command line starts without torch.
Other packages add targets with :func:`register_comparison`.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from . import arguments
from .collapse import collapse_arguments


@dataclass(frozen=True)
class Comparison:
    """One ``pyro-gen compare`` target: its flags, and ``run(args)`` returning the exit status."""

    name: str
    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


class _Deferred:
    """``run(args)`` of a target whose module is imported on the first call."""

    def __init__(self, module: str, attr: str = "run"):
        self.module, self.attr = module, attr

    def __call__(self, args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(self.module), self.attr)(args)

    def __repr__(self) -> str:
        return f"{self.module}:{self.attr}"


_BUILTIN = (
    Comparison(
        "collapse",
        "posterior-collapse remedies on a VAE with a MADE decoder: active units, KL per dimension, "
        "I(x; z), log p(x)",
        collapse_arguments,
        _Deferred("pyro_gen.experiments.collapse"),
    ),
    Comparison(
        "discrete",
        "binary-latent VAE: enumeration vs score function vs relaxation (exact log p(x))",
        arguments.discrete_arguments,
        _Deferred("pyro_gen.experiments.discrete"),
    ),
    Comparison(
        "estimators",
        "gradient estimators on your program (--model FILE.py:NAME): ELBO, log p(x), variance, SNR",
        arguments.estimators_arguments,
        _Deferred("pyro_gen.experiments.estimators"),
    ),
    Comparison(
        "families",
        "every family (autoregressive, flow, VAE, GAN, autoencoder) on one table",
        arguments.families_arguments,
        _Deferred("pyro_gen.experiments.families"),
    ),
    Comparison(
        "gmm",
        "Gaussian mixture by EM, SVI-MAP, SVI-variational and NUTS; K chosen by BIC and PSIS-LOO",
        arguments.gmm_arguments,
        _Deferred("pyro_gen.experiments.gmm"),
    ),
    Comparison(
        "inference",
        "your program (--model FILE.py:NAME): SVI guides against NUTS, PSIS k-hat, posterior moment errors",
        arguments.inference_arguments,
        _Deferred("pyro_gen.experiments.inference"),
    ),
    Comparison(
        "vae",
        "gradient estimators on a VAE: ELBO, log p(x), speed, gradient variance and SNR",
        arguments.vae_arguments,
        _Deferred("pyro_gen.experiments.vae"),
    ),
)
_COMPARISONS: dict[str, Comparison] = {c.name: c for c in _BUILTIN}


def register_comparison(comparison: Comparison) -> Comparison:
    """Register a ``pyro-gen compare`` target (replacing one of the same name); returns it."""
    if not isinstance(comparison, Comparison):
        raise ValueError(f"expected a Comparison, got {type(comparison).__name__}")
    _COMPARISONS[comparison.name] = comparison
    return comparison


def comparisons() -> dict[str, Comparison]:
    """Return every ``pyro-gen compare`` target by name, sorted."""
    return dict(sorted(_COMPARISONS.items()))
