"""An energy-based model on two moons: train, normalize exactly, sample with SGLD and with Pyro's NUTS.

Trains the registered ``ebm`` family (the same run as ``pyro-gen fit ebm --data moons
--method dsm``), reads back its exact-by-quadrature held-out log-likelihood, draws samples
with the model's SGLD sampler and with NUTS on the Pyro program, compares their moments
with the data's, and writes a figure of the data, the learned density and both samplers.

    OMP_NUM_THREADS=1 .venv/bin/python examples/ebm_2d.py --out runs/ebm-example   (about 2 minutes)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pyro_gen.data import load_data
from pyro_gen.inference.ebm import mcmc_sample
from pyro_gen.report.figures import plt, save_figure
from pyro_gen.report.flows import data_bounds, log_density_grid
from pyro_gen.runs import load_run, run_fit


def main() -> None:
    """Train, evaluate and sample the EBM; print its numbers and write ``samplers.png``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/ebm-example")
    p.add_argument("--method", default="dsm", choices=("pcd", "dsm", "ssm", "nce"))
    p.add_argument("--epochs", type=float, default=40)
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    metrics = run_fit(
        "ebm", "moons", out=out, options={"method": args.method}, epochs=args.epochs, overwrite=True, lr=3e-3
    )
    print(
        f"held-out log-likelihood {metrics['test_log_likelihood']:.3f} nats ({metrics['likelihood_kind']}), "
        f"log Z {metrics['log_z']:.3f} (quadrature error {metrics['quadrature_error']:.1e})"
    )
    model, _ = load_run(out)
    model.set_log_normalizer(metrics["log_z"], "quadrature")
    data = load_data("moons")
    torch.manual_seed(0)
    sgld = model.sample(2000)
    nuts = mcmc_sample(model, 100, num_points=20, kernel="nuts", warmup_steps=200, seed=0)
    for name, x in (("data", data.test), ("SGLD", sgld), ("NUTS", nuts)):
        print(f"{name:>5}: mean {x.mean(0).tolist()}, std {x.std(0).tolist()}")
    bounds = data_bounds(data.test)
    xs, ys, logp = log_density_grid(model.log_prob, bounds, 200)
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.5), sharex=True, sharey=True, layout="constrained")
    axes[0].scatter(*data.test.T.numpy(), s=1.5, alpha=0.4)
    axes[0].set_title("held-out data")
    im = axes[1].imshow(logp.clip(-10), origin="lower", extent=bounds, aspect="auto", cmap="viridis")
    fig.colorbar(im, ax=axes[1], label="log p(x) (nats), clipped at -10")
    axes[1].set_title(f"learned log-density ({args.method})")
    axes[2].scatter(*sgld.T.numpy(), s=1.5, alpha=0.4, color="C1")
    axes[2].set_title(f"SGLD samples ({len(sgld):,})")
    axes[3].scatter(*nuts.T.numpy(), s=1.5, alpha=0.4, color="C2")
    axes[3].set_title(f"NUTS draws ({len(nuts):,}, 20 chains)")
    for ax in axes:
        ax.set_xlabel("x1")
    axes[0].set_ylabel("x2")
    print(f"figure: {save_figure(fig, out / 'samplers.png')}")


if __name__ == "__main__":
    main()
