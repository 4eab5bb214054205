"""Which gradient estimator should train a VAE on digits? Measure it (a few minutes on 2 cores).

1. Gradient variance of several estimators on the *same* VAE, batch and parameters.
2. A short training race from the same initialization (held-out ELBO, log p(x), ms/step).
3. A binary-latent VAE trained by exact enumeration, the score function and a relaxation,
   scored by its exact log p(x).

    .venv/bin/python examples/estimators_digits.py [--steps 600] [--out runs/example-estimators]
"""

from __future__ import annotations

import argparse

import torch

from pyro_gen.data import load_data
from pyro_gen.experiments.discrete import compare_discrete
from pyro_gen.experiments.vae import compare_estimators, write_report
from pyro_gen.inference.gradients import gradient_moments
from pyro_gen.models.vae import VAE
from pyro_gen.report.estimators import estimator_table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--out", default="runs/example-estimators")
    args = p.parse_args()
    torch.set_num_threads(1)  # small networks: one thread is fastest
    data = load_data("digits", binarize="dynamic")

    # 1. Variance at fixed parameters: only the estimator changes.
    torch.manual_seed(0)
    vae = VAE(data.dim, latent_dim=16, hidden=[256])
    vae.init_output_bias(data.train.mean(0))
    batch = torch.bernoulli(data.train[:128], generator=torch.Generator().manual_seed(0))
    print("gradient variance at initialization (loss in nats per data point, 30 draws)")
    for name in ["reparam", "analytic-kl", "stl", "score", "score-loo:4", "iwae:5", "dreg:5"]:
        m = gradient_moments(vae, None, name, batch, 30, num_data=data.train.shape[0])
        print(
            f"  {name:12s} encoder var {m['encoder'].total_variance:10.3g}  SNR {m['encoder'].snr:6.3f}   "
            f"decoder var {m['decoder'].total_variance:8.3g}  SNR {m['decoder'].snr:6.3f}"
        )

    # 2. Training race: same init, seed, minibatches and budget.
    results = compare_estimators(
        data,
        ["reparam", "score", "score-baseline", "stl", "dreg:5"],
        steps=args.steps,
        num_checkpoints=3,
        variance_draws=10,
        k=200,
        progress=False,
    )
    config = {
        "data": "digits",
        "steps": args.steps,
        "lr": 1e-3,
        "batch_size": 128,
        "latent_dim": 16,
        "hidden": [256],
        "seed": 0,
        "variance_draws": 10,
        "variance_batch": 128,
        "eval_particles": 100,
    }
    path = write_report(results, args.out, config, k=200)
    print()
    print(estimator_table(results, k=200))
    print(f"report: {path}")

    # 3. Discrete latents: enumeration vs score function vs relaxation, exact log p(x).
    disc = compare_discrete(
        data, ["enum", "score-loo", "relaxed"], num_latents=6, steps=args.steps, progress=False
    )
    print()
    for r in disc:
        f = r["final"]
        print(
            f"  binary VAE {r['name']:10s} test exact ELBO {f['test_exact_elbo']:7.2f}  "
            f"exact log p(x) {f['test_log_likelihood']:7.2f}  {r['costs']['ms_per_step']:.2f} ms/step"
        )


if __name__ == "__main__":
    main()
