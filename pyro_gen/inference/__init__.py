"""Trainers and evaluation: the SVI loop, estimators, importance-sampled log-likelihood."""

from . import compiled  # noqa: F401  (registers the compiled 'jit' estimator)
from .checkpoint import load_checkpoint, save_checkpoint
from .estimators import estimator_names, make_estimator, register_estimator
from .evaluate import evaluate, importance_log_likelihood, log_weights
from .gradients import GradientVarianceRecorder, gradient_moments
from .result import FitResult
from .svi import StepInfo, TrainingDivergedError, elbo_per_point, fit

__all__ = [
    "FitResult",
    "GradientVarianceRecorder",
    "StepInfo",
    "TrainingDivergedError",
    "elbo_per_point",
    "estimator_names",
    "evaluate",
    "fit",
    "gradient_moments",
    "importance_log_likelihood",
    "load_checkpoint",
    "log_weights",
    "make_estimator",
    "register_estimator",
    "save_checkpoint",
]
