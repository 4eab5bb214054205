"""Evaluation of fitted models: ``evaluate`` (exact, importance-sampled or sample-based) and its parts.

* :mod:`.dispatch`: :func:`evaluate` and its result :class:`Evaluation`;
* :mod:`.likelihood`: importance-sampled log-likelihood and log importance weights, block
  sizes fitted to the machine (:func:`choose_block_sizes`) and per-block random streams;
* :mod:`.samples`: sample quality (mode coverage, Frechet distance, feature classifier);
* :mod:`.probe`: linear probes of encoder features.

Names are loaded on first use (PEP 562), so importing the package costs nothing until then.
"""

from __future__ import annotations

from ..lazy import exports

_WHERE = {
    "Evaluation": ".dispatch",
    "evaluate": ".dispatch",
    "evaluation_kind": ".dispatch",
    "BlockSizes": ".likelihood",
    "block_seed": ".likelihood",
    "choose_block_sizes": ".likelihood",
    "importance_log_likelihood": ".likelihood",
    "seeded_block": ".likelihood",
    "log_weights": ".likelihood",
    "per_point_log_prob": ".likelihood",
    "FeatureClassifier": ".samples",
    "feature_classifier_for": ".samples",
    "frechet_distance": ".samples",
    "frechet_distance_gaussians": ".samples",
    "grid_mode_metrics": ".samples",
    "mode_metrics": ".samples",
    "mode_metrics_for_data": ".samples",
    "ring_mode_metrics": ".samples",
    "train_feature_classifier": ".samples",
    "encoder_features": ".probe",
    "linear_probe": ".probe",
    "probe_split": ".probe",
}

__all__ = sorted(_WHERE)

__getattr__, __dir__ = exports(__name__, _WHERE)
