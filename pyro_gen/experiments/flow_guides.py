"""Flow guides against the mean-field guide on one VAE: same decoder, seed and budget.

:func:`compare_guides` trains a :class:`~pyro_gen.models.vae.VAE` and one
:class:`~pyro_gen.models.flow_guides.FlowGuideVAE` per flow type and scores each by the
held-out ELBO and the importance-sampled log-likelihood; the gap between them is the part of
the bound a richer guide can close.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import torch

from ..data import DataSplit
from ..evaluation.likelihood import importance_log_likelihood
from ..inference import fit
from ..models.flow_guides import FlowGuideVAE
from ..models.vae import VAE
from .costs import fit_costs


def compare_guides(
    data: DataSplit,
    *,
    flows: Sequence[str] = ("iaf", "planar"),
    num_flows: int = 4,
    latent_dim: int = 8,
    hidden: Sequence[int] = (256,),
    epochs: float = 50,
    batch_size: int = 128,
    lr: float = 1e-3,
    k: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> list[dict]:
    """Train a mean-field VAE and one :class:`FlowGuideVAE` per ``flows`` entry on ``data`` (a
    :class:`~pyro_gen.data.DataSplit`) with the same decoder, seed and number of steps.

    Returns one row per guide: ``guide``, ``test_elbo`` and ``test_log_likelihood`` (IS with
    ``k`` samples), both nats per data point, ``gap`` (their difference, nats), ``seconds``
    (training wall seconds, evaluation excluded), ``steps``, ``num_parameters`` and ``costs``
    (:func:`~pyro_gen.experiments.costs.fit_costs`).
    """
    rows = []
    for name in ["mean-field", *flows]:
        pyro.set_rng_seed(seed)
        pyro.clear_param_store()
        if name == "mean-field":
            vae: VAE = VAE(data.dim, latent_dim, hidden)
        else:
            vae = FlowGuideVAE(data.dim, latent_dim, hidden, flow=name, num_flows=num_flows)
        vae.init_output_bias(data.train.mean(0))
        res = fit(
            vae,
            data.train,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            transform=data.batch_transform,
            seed=seed,
            progress=progress,
        )
        torch.manual_seed(seed)
        ev = importance_log_likelihood(vae, data.test, k=k)
        rows.append(
            {
                "guide": name if name == "mean-field" else f"{name} x{num_flows}",
                "test_elbo": ev["elbo"],
                "test_log_likelihood": ev["log_likelihood"],
                "gap": ev["log_likelihood"] - ev["elbo"],
                "bits_per_dim": ev["log_likelihood"] / -(data.dim * math.log(2)),
                "seconds": res.seconds,
                "steps": res.steps,
                "num_parameters": sum(p.numel() for p in vae.parameters()),
                "costs": fit_costs(res),
            }
        )
    return rows
