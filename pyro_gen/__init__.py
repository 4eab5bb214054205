"""pyro-gen: deep generative models as Pyro model/guide pairs, trained, compared and diagnosed alike."""

from .data import DataSplit, load_data
from .inference import FitResult, evaluate, fit
from .models import VAE, data_plate
from .registry import ModelFamily, register

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "DataSplit",
    "FitResult",
    "ModelFamily",
    "__version__",
    "data_plate",
    "evaluate",
    "fit",
    "load_data",
    "register",
]
