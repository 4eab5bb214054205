"""Gradient estimators by name: every one is a Pyro ELBO object usable with ``fit``.

``make_estimator("reparam")`` and friends return fresh ELBO instances. New estimators are
added with :func:`register_estimator`, so the CLI and ``compare`` pick them up by name.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro.infer as infer
import torch
from pyro.infer import ELBO

_ESTIMATORS: dict[str, tuple[Callable[..., ELBO], str]] = {}


def register_estimator(name: str, factory: Callable[..., ELBO], summary: str) -> None:
    """Register ``factory(num_particles=..., **kw) -> ELBO`` under ``name``."""
    _ESTIMATORS[name] = (factory, summary)


def estimator_names() -> list[str]:
    """Return the registered estimator names, sorted."""
    return sorted(_ESTIMATORS)


def make_estimator(spec: str | ELBO, num_particles: int = 1, **kwargs) -> ELBO:
    """Return an ELBO for ``spec``: an ELBO instance (returned as is) or a registered name.

    A name may carry the particle count after a colon, e.g. ``"iwae:5"``.
    """
    if isinstance(spec, ELBO):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"estimator must be a name or a pyro.infer.ELBO, got {type(spec).__name__}")
    name, _, k = spec.partition(":")
    if name not in _ESTIMATORS:
        raise ValueError(f"unknown estimator {spec!r}; choose one of {', '.join(estimator_names())}")
    if k:
        if not k.isdigit() or int(k) < 1:
            raise ValueError(f"estimator {spec!r}: the particle count after ':' must be a positive integer")
        num_particles = int(k)
    return _ESTIMATORS[name][0](num_particles=num_particles, **kwargs)


class CachedJitTrace_ELBO(infer.JitTrace_ELBO):
    """``JitTrace_ELBO`` that compiles once per argument shape and keeps warnings quiet.

    Same estimator as ``Trace_ELBO`` (reparameterized where possible), compiled with
    ``torch.jit.trace`` on first use; later calls skip Pyro's Python-level effect handlers.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs):  # noqa: D102
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            return super().differentiable_loss(model, guide, *args, **kwargs)


def _vectorized(cls):
    def factory(num_particles: int = 1, **kw):
        vec = num_particles > 1
        return cls(num_particles=num_particles, vectorize_particles=vec, **kw)

    return factory


register_estimator("reparam", _vectorized(infer.Trace_ELBO), "Trace_ELBO: reparameterized ELBO gradient")
register_estimator(
    "analytic-kl", _vectorized(infer.TraceMeanField_ELBO), "TraceMeanField_ELBO: KL in closed form"
)
register_estimator("jit", _vectorized(CachedJitTrace_ELBO), "JIT-compiled Trace_ELBO (fastest on CPU)")
register_estimator(
    "tracegraph",
    _vectorized(infer.TraceGraph_ELBO),
    "TraceGraph_ELBO (score function with Rao-Blackwellization)",
)
register_estimator(
    "enum",
    lambda num_particles=1, **kw: infer.TraceEnum_ELBO(num_particles=num_particles, **kw),
    "TraceEnum_ELBO: discrete sites enumerated exactly",
)
