"""Posterior diagnostics for every fit: ArviZ conversion, PSIS k-hat, collapse, MCMC checks.

Names are loaded on first use (PEP 562) so that the CLI can build its parser without
importing ArviZ.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "assemble": "convert",
    "from_guide": "convert",
    "from_mcmc": "convert",
    "from_nuts": "convert",
    "load_inference_data": "convert",
    "save_inference_data": "convert",
    "to_inference_data": "convert",
    "compare": "mcmc",
    "ess_verdict": "mcmc",
    "loo": "mcmc",
    "mcmc_diagnostics": "mcmc",
    "pareto_k_threshold": "mcmc",
    "rhat_verdict": "mcmc",
    "active_units": "variational",
    "all_in_data_plate": "variational",
    "amortization_gap": "variational",
    "importance_gap": "variational",
    "khat_from_inference_data": "variational",
    "khat_verdict": "variational",
    "kl_per_dim": "variational",
    "psis_diagnostic": "variational",
    "psis_khat": "variational",
    "variational_log_weights": "variational",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
