"""The rest of the family tree on 8x8 digits, in a few minutes on a laptop CPU.

1. MADE (exact likelihood) trained by maximum likelihood with the ordinary SVI loop;
2. a denoising autoencoder and its linear probe, next to the probe on raw pixels;
3. ICA on mixed Laplace sources: maximum likelihood, SVI and FastICA by Amari distance.

    .venv/bin/python examples/families_digits.py --out runs/families_example

For every family on one table (autoregressive, flow, VAE, GAN, autoencoder) run
``pyro-gen compare families --data digits``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pyro_gen.data import load_data
from pyro_gen.evaluation.probe import probe_split
from pyro_gen.experiments.ica import compare_ica
from pyro_gen.inference import fit
from pyro_gen.inference.loss import train_autoencoder
from pyro_gen.models.autoencoders import Autoencoder
from pyro_gen.models.autoregressive import MADE, exact_log_likelihood
from pyro_gen.report import image_grid


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/families_example")
    p.add_argument("--epochs", type=int, default=40)
    args = p.parse_args()
    out = Path(args.out)
    torch.set_num_threads(1)
    data = load_data("digits", binarize="dynamic", seed=0)

    # 1. MADE: a Pyro model without latents, so the ELBO is the exact log-likelihood.
    made = MADE(data.dim, hidden=(512, 512))
    made.init_output_bias(data.train.mean(0))
    fit(made, data.train, epochs=args.epochs, transform=data.batch_transform, lr=1e-3)
    ll = exact_log_likelihood(made, data.test)
    print(
        f"MADE: test log-likelihood {ll['log_likelihood']:.2f} nats/image = {ll['bits_per_dim']:.4f} bits/dim"
    )
    torch.manual_seed(0)
    print("samples:", image_grid(made.sample(64), out / "made_samples.png", data.shape, title="MADE samples"))

    # 2. Denoising autoencoder: train, throw the decoder away, probe the codes.
    ae = Autoencoder(data.dim, code_dim=32, kind="denoising", noise_level=0.3)
    ae.init_output_bias(data.train.mean(0))
    res = train_autoencoder(
        ae, data.train, epochs=args.epochs, test_data=data.test, transform=data.batch_transform
    )
    probe, raw = probe_split(ae, data), probe_split(None, data)
    print(
        f"denoising AE: test loss {res.history[-1]['test_loss']:.2f} nats/image; linear probe on codes "
        f"{probe['accuracy']:.3f} vs raw pixels {raw['accuracy']:.3f}"
    )

    # 3. ICA: Amari distance to the true mixing matrix (0 = recovered up to permutation and scale).
    for method, r in compare_ica(2000, 3, "laplace", seed=0).items():
        print(f"ICA {method:<8} Amari distance {r['amari']:.4f} ({r['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
