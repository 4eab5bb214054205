"""pyro-gen: deep generative models as Pyro model/guide pairs, trained, compared and diagnosed alike.

The four verbs:

* :func:`fit` (model, data, ...) -> :class:`FitResult`: one engine, any objective;
* :func:`evaluate` (model, data, k=...) -> ``Evaluation``: exact, importance-sampled or sample metrics;
* :func:`to_inference_data` (result or model) -> ``arviz.InferenceData``, every result kind;
* :func:`report` (results, out_dir) -> the files a person opens.

Names are imported on first use, so ``import pyro_gen`` (and the command line's ``--help``)
does not load torch.
"""

from __future__ import annotations

from .lazy import exports

__version__ = "0.1.0"

_EXPORTS = {
    "fit": "pyro_gen.inference.svi",
    "train": "pyro_gen.inference.engine",
    "FitResult": "pyro_gen.inference.result",
    "TrainingDivergedError": "pyro_gen.inference.engine",
    "evaluate": "pyro_gen.evaluation",
    "Evaluation": "pyro_gen.evaluation",
    "to_inference_data": "pyro_gen.diagnostics",
    "report": "pyro_gen.report",
    "load_data": "pyro_gen.data",
    "DataSplit": "pyro_gen.data",
    "VAE": "pyro_gen.models",
    "data_plate": "pyro_gen.models",
    "ModelFamily": "pyro_gen.registry",
    "register": "pyro_gen.registry",
    "TrainConfig": "pyro_gen.config",
    "RunConfig": "pyro_gen.config",
}

__all__ = sorted([*_EXPORTS, "__version__"])

__getattr__, __dir__ = exports(__name__, _EXPORTS)
