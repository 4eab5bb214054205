"""Training: the engine, its objectives (SVI, adversarial, plain loss), estimators, EM, NUTS, checkpoints.

Names are imported on first use (PEP 562), so ``pyro_gen.inference.catalog`` and the
command line load no torch.
"""

from __future__ import annotations

from ..lazy import exports

_WHERE = {
    "FitResult": ".result",
    "GradientVarianceRecorder": ".gradients",
    "Objective": ".objective",
    "SVIObjective": ".svi",
    "StepContext": ".objective",
    "StepInfo": ".objective",
    "TrainingDivergedError": ".engine",
    "elbo_per_point": ".svi",
    "estimator_names": ".estimators",
    "fit": ".svi",
    "gradient_moments": ".gradients",
    "load_checkpoint": ".checkpoint",
    "make_estimator": ".estimators",
    "register_estimator": ".estimators",
    "save_checkpoint": ".checkpoint",
    "train": ".engine",
}

__all__ = sorted(_WHERE)

__getattr__, __dir__ = exports(__name__, _WHERE)
