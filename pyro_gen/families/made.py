"""The ``made`` family: ``pyro-gen fit made --data digits`` (exact log-likelihood, ancestral samples).

Trained by the SVI loop with an empty guide, i.e. by maximum likelihood. Binarized data
(the CLI default) get Bernoulli conditionals, ``--binarize none`` Gaussian ones (a density
over the grey levels, not a probability of the discrete data).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..registry import ModelFamily


def _made_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hidden", default="512,512", help="masked hidden widths, comma-separated")
    p.add_argument(
        "--likelihood",
        default="auto",
        choices=["auto", "bernoulli", "gaussian"],
        help="conditionals (auto: bernoulli for binarized data, else gaussian)",
    )
    p.add_argument("--order", default="natural", choices=["natural", "random"], help="autoregressive order")
    p.add_argument("--activation", default="relu", choices=["relu", "tanh", "softplus", "elu"])


def build_made(data, options: dict):
    """Return an untrained :class:`~pyro_gen.models.autoregressive.MADE` for ``data``."""
    from ..models.autoregressive import MADE

    likelihood = options.get("likelihood", "auto")
    if likelihood == "auto":
        likelihood = "bernoulli" if data.binarized else "gaussian"
    order = None
    if options.get("order", "natural") == "random":
        order = torch.randperm(data.dim, generator=torch.Generator().manual_seed(0))  # fixed: reloadable
    made = MADE(
        data.dim,
        hidden=[int(h) for h in str(options.get("hidden", "512,512")).split(",") if h],
        likelihood=likelihood,
        order=order,
        activation=options.get("activation", "relu"),
    )
    made.init_output_bias(data.train.mean(0))
    return made


def evaluate_autoregressive(model, data, config: dict) -> dict:
    """Return exact ``train_elbo``/``test_elbo``/``test_log_likelihood`` (nats per point) and bits/dim.

    ``train_elbo`` is computed on the first 10,000 training rows at most.
    """
    from ..models.autoregressive import exact_log_likelihood

    train = data.train[:10000]  # the train metric on at most 10,000 rows (MNIST: 60,000 x 784 passes)
    if data.batch_transform is not None:
        with torch.random.fork_rng():
            torch.manual_seed(int(config.get("seed", 0)))
            train = data.batch_transform(train)
    tr = exact_log_likelihood(model, train)
    te = exact_log_likelihood(model, data.test)
    return {
        "train_elbo": tr["log_likelihood"],
        "test_elbo": te["log_likelihood"],
        "test_log_likelihood": te["log_likelihood"],
        "test_bits_per_dim": te["bits_per_dim"],
        "likelihood_kind": "exact",
    }


def load_autoregressive(build):
    """Return a ``load(run_dir, config)`` hook that rebuilds with ``build`` and the checkpoint's weights."""

    def load(run_dir, config: dict):
        from ..data import DataSplit
        from ..inference.checkpoint import load_checkpoint

        dim = int(config["dim"])
        stub = DataSplit(
            config.get("data_name", "data"),
            torch.full((1, dim), 0.5),
            torch.full((1, dim), 0.5),
            tuple(config["shape"]),
            binarized=config.get("binarize") not in (None, "none"),
        )
        model = build(stub, config.get("options", {}))
        model.load_state_dict(load_checkpoint(Path(run_dir) / "checkpoint.pt")["module_state"])
        model.eval()
        return model

    return load


MADE_FAMILY = ModelFamily(
    name="made",
    summary="MADE: masked autoregressive MLP, exact log-likelihood (Bernoulli or Gaussian conditionals)",
    build=build_made,
    add_arguments=_made_arguments,
    evaluate=evaluate_autoregressive,
    load=load_autoregressive(build_made),
    default_estimator="reparam",
)
