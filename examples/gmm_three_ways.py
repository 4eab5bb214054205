"""Fit one Gaussian mixture three ways (EM, SVI with enumeration, NUTS) and compare them.

    .venv/bin/python examples/gmm_three_ways.py [--out runs/gmm_three_ways] [--quick]

Part 1 uses a synthetic 2-D mixture with known parameters (K=3): all methods should land on
the same components, and BIC (EM) and PSIS-LOO (NUTS) should both pick K=3.
Part 2 uses real data shipped with scikit-learn: the 8x8 digits projected on their first two
principal components, a mixture with K=6 full-covariance components.
Each part writes comparison.json and PNG figures (mixtures.png, traces.png,
model_selection.png) under --out and prints a table (log-likelihoods in nats per point).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pyro_gen.experiments.gmm import compare_gmm, format_table, load_for_gmm, synthetic_mixture, write_report


def main() -> None:
    """Run both parts and print their tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/gmm_three_ways")
    p.add_argument("--quick", action="store_true", help="fewer SVI steps and NUTS draws")
    args = p.parse_args()
    # The tensors here are tiny: one intra-op thread avoids OpenMP stalls on a busy shared CPU.
    torch.set_num_threads(1)
    svi_steps, nuts = (300, 100) if args.quick else (1000, 300)
    out = Path(args.out)

    train, test = synthetic_mixture(num_train=300, num_test=300, seed=0)
    report = compare_gmm(
        train,
        test,
        3,
        "full",
        svi_steps=svi_steps,
        nuts_samples=nuts,
        nuts_warmup=nuts,
        k_range=(1, 2, 3, 4, 5),
        loo_k_range=(2, 3, 4),
        progress=False,
    )
    files = write_report(report, train, out / "synthetic")
    print("== synthetic 2-D mixture, K=3 (truth: 3 components)")
    print(format_table(report))
    print(f"   files: {out / 'synthetic'}/ {', '.join(files)}\n")

    train, test, name = load_for_gmm("digits", pca_dim=2)
    report = compare_gmm(
        train,
        test,
        6,
        "full",
        svi_steps=svi_steps,
        nuts_samples=nuts,
        nuts_warmup=nuts,
        k_range=tuple(range(1, 11)),
        loo_k_range=(),
        progress=False,
    )
    files = write_report(report, train, out / name)
    print(f"== {name}: digits on their first 2 principal components, K=6")
    print(format_table(report))
    print(f"   files: {out / name}/ {', '.join(files)}")


if __name__ == "__main__":
    main()
