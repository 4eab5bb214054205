"""Training: the engine, its objectives (SVI, adversarial, plain loss), estimators, EM, NUTS, checkpoints."""

from .checkpoint import load_checkpoint, save_checkpoint
from .engine import Objective, StepContext, StepInfo, TrainingDivergedError, train
from .estimators import estimator_names, make_estimator, register_estimator
from .gradients import GradientVarianceRecorder, gradient_moments
from .result import FitResult
from .svi import SVIObjective, elbo_per_point, fit

__all__ = [
    "FitResult",
    "GradientVarianceRecorder",
    "Objective",
    "SVIObjective",
    "StepContext",
    "StepInfo",
    "TrainingDivergedError",
    "elbo_per_point",
    "estimator_names",
    "fit",
    "gradient_moments",
    "load_checkpoint",
    "make_estimator",
    "register_estimator",
    "save_checkpoint",
    "train",
]
