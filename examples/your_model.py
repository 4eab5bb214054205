"""Your own probabilistic program through pyro-gen: a hierarchical regression, end to end.

The program is :data:`MODEL`, a varying-intercept linear regression on tabular data (rows
``group, x, y``: group ``j`` of ``J`` has its own intercept ``a_j`` drawn around a shared
``mu_a``, one slope ``b`` for all, Gaussian noise ``sigma_y``), with centred intercepts (each
group has some 40 rows, so the data pin the intercepts down and NUTS mixes well in this
parametrization). It has no guide: pyro-gen pairs it with
``AutoNormal``. Run as a script, this file writes a synthetic data set to ``OUT/regression.csv``
and takes the program through the command line:

    pyro-gen fit --model examples/your_model.py:MODEL --data OUT/regression.csv --out OUT/fit
    pyro-gen sample OUT/fit --num 200 --out OUT/fit/draws.npy      (posterior-predictive y)
    pyro-gen diagnose OUT/fit                                       (k-hat, IS gap, PSIS-LOO, R-hat)
    pyro-gen compare estimators --model examples/your_model.py:MODEL --data OUT/regression.csv \\
        --out OUT/estimators      (the default estimators that can train it: reparam, score,
                                   score-baseline; stl, iwae and dreg are left out with a note)
    pyro-gen compare inference --model examples/your_model.py:MODEL --data OUT/regression.csv \\
        --out OUT/inference                 (AutoNormal, low-rank, IAF guides against NUTS)

Each run folder and comparison folder also gets the HTML page ``index.html`` that pyro-gen's
report writes beside its Markdown (open it in a browser).

    .venv/bin/python examples/your_model.py --out runs/your-model            (10-20 minutes on 2 cores)
    .venv/bin/python examples/your_model.py --out runs/your-model --quick    (a few minutes)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from pyro_gen.models import data_plate

NUM_GROUPS = 8


class HierarchicalRegression:
    """``y_n ~ Normal(a[g_n] + b x_n, sigma_y)`` with intercepts ``a_j ~ Normal(mu_a, sigma_a)``.

    The data rows are ``(g, x, y)`` with the group index ``g`` in ``0..num_groups-1`` stored as
    a float. Priors: ``mu_a, b ~ Normal(0, 5)``, ``sigma_a, sigma_y ~ HalfNormal(2)``. Every latent
    is global (outside the data plate); the observed ``y`` is inside it. The code broadcasts over
    a leading batch of draws (``pyro-gen diagnose`` and Pyro's vectorized importance sampling
    run the program under a plate of particles on the left).
    """

    def __init__(self, num_groups: int = NUM_GROUPS):
        self.num_groups = num_groups

    def model(self, x: torch.Tensor) -> None:
        """The joint density of the latents and the observed column ``y`` of the rows ``x``."""
        if x.shape[1] != 3:
            raise ValueError(f"the rows must be (group, x, y), got {x.shape[1]} columns")
        mu_a = pyro.sample("mu_a", dist.Normal(0.0, 5.0))
        sigma_a = pyro.sample("sigma_a", dist.HalfNormal(2.0))
        b = pyro.sample("b", dist.Normal(0.0, 5.0))
        sigma_y = pyro.sample("sigma_y", dist.HalfNormal(2.0))
        with pyro.plate("groups", self.num_groups):
            a = pyro.sample("a", dist.Normal(mu_a, sigma_a))  # (..., J)
        group = x[:, 0].long()
        with data_plate(x):
            # [..., group] keeps any batch of draws on the left
            pyro.sample("y", dist.Normal(a[..., group] + b * x[:, 1], sigma_y), obs=x[:, 2])


MODEL = HierarchicalRegression()


def write_data(path: Path, num_rows: int = 400, seed: int = 0) -> Path:
    """Write a synthetic data set of ``num_rows`` rows ``(group, x, y)`` to the CSV ``path``; return it."""
    rng = np.random.default_rng(seed)
    a = 1.0 + 0.8 * rng.normal(size=NUM_GROUPS)
    g = rng.integers(0, NUM_GROUPS, size=num_rows)
    x = rng.normal(size=num_rows)
    y = a[g] - 0.7 * x + 0.5 * rng.normal(size=num_rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.stack([g, x, y], 1), delimiter=",", header="group,x,y", comments="", fmt="%.6g")
    return path


def main(argv: list[str] | None = None) -> int:
    """Write the data and run fit, sample, diagnose, compare estimators and compare inference."""
    from pyro_gen.cli import main as pyro_gen

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/your-model")
    p.add_argument("--quick", action="store_true", help="small budgets (a smoke run)")
    args = p.parse_args(argv)
    out = Path(args.out)
    data = str(write_data(out / "regression.csv"))
    target = f"{Path(__file__).resolve()}:MODEL"
    steps = ["--steps", "300"] if args.quick else ["--steps", "3000"]
    common = ["--data", data, "--no-progress"]
    commands = [
        ["fit", "--model", target, *common, *steps, "--out", str(out / "fit"), "--overwrite"],
        ["sample", str(out / "fit"), "--num", "200", "--out", str(out / "fit" / "draws.npy")],
        ["diagnose", str(out / "fit"), "--no-progress", "--num-samples", "200"],
        [
            "compare",
            "estimators",
            "--model",
            target,
            *common,
            *(["--steps", "200", "--variance-draws", "10", "--k", "200"] if args.quick else []),
            "--out",
            str(out / "estimators"),
        ],
        [
            "compare",
            "inference",
            "--model",
            target,
            *common,
            *(
                ["--steps", "1000", "--lr", "0.05", "--num-samples", "200", "--nuts-warmup", "200"]
                if args.quick
                else []
            ),
            "--out",
            str(out / "inference"),
        ],
    ]
    for command in commands:
        print("$ pyro-gen " + " ".join(command), flush=True)
        status = pyro_gen(command)
        if status != 0:
            return status
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
