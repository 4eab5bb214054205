"""Posterior diagnostics for every fit: ArviZ conversion, PSIS k-hat, collapse, MCMC checks.

Names are loaded on first use (PEP 562) so that the CLI can build its parser without
importing ArviZ.
"""

from __future__ import annotations

from ..lazy import exports

_WHERE = {
    "assemble": ".convert",
    "from_guide": ".convert",
    "from_mcmc": ".convert",
    "from_nuts": ".convert",
    "load_inference_data": ".convert",
    "save_inference_data": ".convert",
    "to_inference_data": ".convert",
    "compare": ".mcmc",
    "ess_verdict": ".mcmc",
    "loo": ".mcmc",
    "mcmc_diagnostics": ".mcmc",
    "pareto_k_threshold": ".mcmc",
    "rhat_verdict": ".mcmc",
    "active_units": ".variational",
    "all_in_data_plate": ".variational",
    "amortization_gap": ".variational",
    "importance_gap": ".variational",
    "khat_from_inference_data": ".variational",
    "khat_verdict": ".variational",
    "kl_per_dim": ".variational",
    "psis_diagnostic": ".variational",
    "psis_khat": ".variational",
    "variational_log_weights": ".variational",
}

__all__ = sorted(_WHERE)

__getattr__, __dir__ = exports(__name__, _WHERE)
