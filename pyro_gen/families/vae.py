"""The VAE family entry (referenced from pyproject's entry points)."""

from __future__ import annotations

import argparse

from ..registry import ModelFamily


def _vae_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--latent-dim", type=int, default=16, help="latent dimensions (2 draws the manifold)")
    p.add_argument("--hidden", default="256", help="encoder widths, comma-separated (decoder mirrors)")
    p.add_argument("--activation", default="relu", choices=["relu", "tanh", "softplus", "elu"])
    p.add_argument("--likelihood", default="bernoulli", choices=["bernoulli", "gaussian"])
    p.add_argument("--gaussian-scale", type=float, default=0.1, help="std of the Gaussian likelihood")
    p.add_argument("--learn-scale", action="store_true", help="learn the Gaussian likelihood's std")


def _build_vae(data, options: dict):
    from ..models.vae import VAE

    hidden = [int(h) for h in str(options.get("hidden", "256")).split(",") if h]
    vae = VAE(
        data.dim,
        latent_dim=int(options.get("latent_dim", 16)),
        hidden=hidden,
        activation=options.get("activation", "relu"),
        likelihood=options.get("likelihood", "bernoulli"),
        gaussian_scale=float(options.get("gaussian_scale", 0.1)),
        learn_scale=bool(options.get("learn_scale", False)),
    )
    vae.init_output_bias(data.train.mean(0))
    return vae


VAE_FAMILY = ModelFamily(
    name="vae",
    summary="Variational autoencoder: MLP encoder/decoder, Bernoulli or Gaussian likelihood",
    build=_build_vae,
    add_arguments=_vae_arguments,
    default_estimator="reparam",
)
