"""EM speed and quality against scikit-learn's GaussianMixture, measured in the same run.

    .venv/bin/python benchmarks/gmm.py                 # the issue's 8 rows, N=100,000
    .venv/bin/python benchmarks/gmm.py --quick         # N=20,000, for a smoke run

For each (D, K, covariance) row both estimators start from the same k-means++ starting
point (weights, means and precisions passed to both) and run the same EM iterations with
the same stopping rule (``tol`` on the change of the average log-likelihood, ``max_iter``).
Reported: wall seconds of ``fit`` for each (best of ``--repeats``, runs interleaved), the
ratio ours/sklearn (below 1 means ours is faster), the iterations each took and the final
average log-likelihood difference (nats per point). Writes ``benchmarks/results/gmm.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from pyro_gen.inference.em import GaussianMixtureEM, initial_parameters

ROWS = [(d, k, c) for d in (10, 64) for k in (8, 16) for c in ("full", "diag")]


def overlapping_clusters(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """Draw ``n`` points from K clusters with random full covariances whose means overlap."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=1.5, size=(k, d))
    mix = rng.normal(scale=0.3, size=(k, d, d)) + np.eye(d)
    z = rng.integers(k, size=n)
    eps = rng.normal(size=(n, d))
    return means[z] + np.einsum("nij,nj->ni", mix[z], eps)


def run_row(x: np.ndarray, k: int, cov: str, max_iter: int, tol: float, repeats: int) -> dict:
    w0, m0, c0 = initial_parameters(x, k, cov, seed=0)
    p0 = torch.linalg.inv(c0).numpy() if cov == "full" else 1.0 / c0.diagonal(dim1=1, dim2=2).numpy()
    kw = dict(weights_init=w0.numpy(), means_init=m0.numpy(), precisions_init=p0, tol=tol, max_iter=max_iter)
    t_ours, t_ref = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        t = time.perf_counter()
        ours = GaussianMixtureEM(k, covariance_type=cov, **kw).fit(x)
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        with np.errstate(all="ignore"):
            ref = GaussianMixture(k, covariance_type=cov, **kw).fit(x)
        t_ref.append(time.perf_counter() - t)
    ll_ours, ll_ref = ours.score(x), float(ref.score(x))
    return {
        "D": x.shape[1],
        "K": k,
        "covariance": cov,
        "ours_seconds": min(t_ours),
        "sklearn_seconds": min(t_ref),
        "ratio": min(t_ours) / min(t_ref),
        "ours_iterations": ours.n_iter_,
        "sklearn_iterations": int(ref.n_iter_),
        "ours_log_likelihood": ll_ours,
        "sklearn_log_likelihood": ll_ref,
        "log_likelihood_diff": ll_ours - ll_ref,
    }


def main() -> None:
    """Run the benchmark, print the table and write the JSON file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="data points")
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--tol", type=float, default=1e-3, help="nats per point")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="N=20,000 and D=10 rows only")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads for ours (1: on a shared, oversubscribed CPU more threads "
        "spin in OpenMP barriers; scikit-learn keeps its BLAS threads)",
    )
    p.add_argument("--out", default="benchmarks/results/gmm.json")
    args = p.parse_args()
    torch.set_num_threads(args.torch_threads)
    rows = [r for r in ROWS if r[0] == 10] if args.quick else ROWS
    n = 20_000 if args.quick else args.n
    results = []
    header = (
        f"{'D':>3} {'K':>3} {'cov':>5} {'ours s':>8} {'sklearn s':>9} {'ratio':>6} {'iters':>9} "
        f"{'dLL nats/pt':>12}"
    )
    print(header)
    for d, k, cov in rows:
        x = overlapping_clusters(n, d, k, seed=d * 100 + k)
        r = run_row(x, k, cov, args.max_iter, args.tol, args.repeats)
        results.append(r)
        print(
            f"{d:>3} {k:>3} {cov:>5} {r['ours_seconds']:>8.2f} {r['sklearn_seconds']:>9.2f} "
            f"{r['ratio']:>6.2f} "
            f"{r['ours_iterations']:>4}/{r['sklearn_iterations']:<4} {r['log_likelihood_diff']:>12.2e}",
            flush=True,
        )
    meta = {
        "n": n,
        "max_iter": args.max_iter,
        "tol": args.tol,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "note": "2-core CPU shared with other jobs; ratio = ours / sklearn wall time, same run",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
