"""Training: the engine, its objectives (SVI, adversarial, plain loss), estimators, EM, NUTS, checkpoints.

Names are imported on first use (PEP 562), so ``pyro_gen.inference.catalog`` and the
command line load no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "FitResult": "result",
    "GradientVarianceRecorder": "gradients",
    "Objective": "engine",
    "SVIObjective": "svi",
    "StepContext": "engine",
    "StepInfo": "engine",
    "TrainingDivergedError": "engine",
    "elbo_per_point": "svi",
    "estimator_names": "estimators",
    "fit": "svi",
    "gradient_moments": "gradients",
    "load_checkpoint": "checkpoint",
    "make_estimator": "estimators",
    "register_estimator": "estimators",
    "save_checkpoint": "checkpoint",
    "train": "engine",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """Return the exported ``name``, importing its module on first use."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
