"""EM speed and quality against scikit-learn's GaussianMixture, measured in the same run.

    .venv/bin/python benchmarks/gmm.py --max-iter 30   # same start: 8 rows, N=100,000 (speed)
    .venv/bin/python benchmarks/gmm.py --quick         # N=20,000, for a smoke run
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gmm.py --default-start   # each one's own start

Same start (the default mode): for each (D, K, covariance) row both estimators start from
the same k-means++ starting point (weights, means and precisions passed to both) and run the
same EM iterations with the same stopping rule (``tol`` on the change of the average
log-likelihood, ``max_iter``). Reported: wall seconds of ``fit`` for each (best of
``--repeats``, runs interleaved), the ratio ours/sklearn (below 1 means ours is faster), the
iterations each took and the final average log-likelihood difference (nats per point).
Writes ``benchmarks/results/gmm.json``.

Default start (``--default-start``): each estimator from its own default start, ours
``GaussianMixtureEM(K, seed=s)`` (``init="kmeans"``) against ``GaussianMixture(K,
random_state=s)`` (``init_params="kmeans"``), with the same K, full covariance, ``tol``
1e-3, ``max_iter`` 100, ``reg_covar`` 1e-6 and seed, on iris (K=3, as given), wine (K=3,
standardized), digits-PCA10 (K=10: the training split of ``pyro-gen compare gmm --data
digits --pca-dim 10``) and a 100,000-point synthetic mixture (D=10, K=8, overlapping). Also
ours from the k-means++ start (``init="kmeans++"``, the start before k-means). Reported per
data set and seed: the final mean training log-likelihood of each (nats per point), ours
minus scikit-learn's, the iterations, the wall seconds of each ``fit`` (initialization
included) and their ratio. Writes ``benchmarks/results/gmm_default_start.json``.
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


def default_start_sets(n_synthetic: int = 100_000) -> list[tuple[str, np.ndarray, int]]:
    """Return ``(name, data (N, D) float64, K)`` of the default-start comparison."""
    from sklearn.datasets import load_iris, load_wine
    from sklearn.preprocessing import StandardScaler

    from pyro_gen.experiments.gmm import load_for_gmm

    digits, _, _ = load_for_gmm("digits", 10)
    return [
        ("iris", load_iris().data.astype(np.float64), 3),
        ("wine", StandardScaler().fit_transform(load_wine().data).astype(np.float64), 3),
        ("digits-pca10", digits.double().numpy(), 10),
        (f"synthetic-{n_synthetic // 1000}k", overlapping_clusters(n_synthetic, 10, 8, seed=1008), 8),
    ]


def run_default_start(
    name: str, x: np.ndarray, k: int, seed: int, max_iter: int, tol: float, repeats: int = 1
) -> dict:
    """Fit ours (k-means and k-means++ starts) and scikit-learn's default from ``seed``; return the record.

    Seconds are the best of ``repeats`` interleaved fits of each (the fits are deterministic).
    """
    kw = dict(covariance_type="full", tol=tol, max_iter=max_iter, reg_covar=1e-6)
    t_ours, t_ref = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        ours = GaussianMixtureEM(k, seed=seed, **kw).fit(x)
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        with np.errstate(all="ignore"):
            ref = GaussianMixture(k, random_state=seed, **kw).fit(x)
        t_ref.append(time.perf_counter() - t)
    t_ours, t_ref = min(t_ours), min(t_ref)
    old = GaussianMixtureEM(k, seed=seed, init="kmeans++", **kw).fit(x)
    ll_ours, ll_ref = ours.score(x), float(ref.score(x))
    return {
        "data": name,
        "N": int(x.shape[0]),
        "D": int(x.shape[1]),
        "K": k,
        "seed": seed,
        "init": ours.start_,
        "ours_log_likelihood": ll_ours,
        "sklearn_log_likelihood": ll_ref,
        "log_likelihood_diff": ll_ours - ll_ref,
        "kmeanspp_log_likelihood": old.score(x),
        "kmeanspp_diff": old.score(x) - ll_ref,
        "ours_iterations": ours.n_iter_,
        "sklearn_iterations": int(ref.n_iter_),
        "ours_seconds": t_ours,
        "sklearn_seconds": t_ref,
        "ratio": t_ours / t_ref,
    }


def main_default_start(args: argparse.Namespace) -> None:
    """Run the default-start comparison, print the table and write its JSON file."""
    out = args.out if args.out != DEFAULT_OUT else "benchmarks/results/gmm_default_start.json"
    header = (
        f"{'data':<15} {'K':>3} {'seed':>4} {'ours LL':>10} {'sklearn LL':>10} {'ours-skl':>10} "
        f"{'k-means++-skl':>13} {'iters':>7} {'ours s':>7} {'skl s':>7} {'ratio':>6}"
    )
    print(header)
    rows = []
    for name, x, k in default_start_sets(args.n):
        for seed in range(args.seeds):
            # sub-second fits: best of 5 so the ratio is not one scheduler hiccup
            repeats = max(args.repeats, 5) if x.shape[0] < 20_000 else args.repeats
            r = run_default_start(name, x, k, seed, args.max_iter, args.tol, repeats)
            rows.append(r)
            print(
                f"{name:<15} {k:>3} {seed:>4} {r['ours_log_likelihood']:>10.4f} "
                f"{r['sklearn_log_likelihood']:>10.4f} {r['log_likelihood_diff']:>10.1e} "
                f"{r['kmeanspp_diff']:>13.4f} {r['ours_iterations']:>3}/{r['sklearn_iterations']:<3} "
                f"{r['ours_seconds']:>7.2f} {r['sklearn_seconds']:>7.2f} {r['ratio']:>6.2f}",
                flush=True,
            )
    print("\nper data set (over seeds): min ours-sklearn (nats/pt), mean k-means++-sklearn, median ratio")
    summary = []
    for name in dict.fromkeys(r["data"] for r in rows):
        rs = [r for r in rows if r["data"] == name]
        row = {
            "data": name,
            "seeds": len(rs),
            "min_log_likelihood_diff": min(r["log_likelihood_diff"] for r in rs),
            "mean_kmeanspp_diff": float(np.mean([r["kmeanspp_diff"] for r in rs])),
            "median_ratio": float(np.median([r["ratio"] for r in rs])),
            "met": all(r["log_likelihood_diff"] >= -1e-6 for r in rs),
        }
        summary.append(row)
        print(
            f"  {name:<15} {row['min_log_likelihood_diff']:>10.1e} {row['mean_kmeanspp_diff']:>9.4f} "
            f"{row['median_ratio']:>6.2f}  {'met' if row['met'] else 'NOT met'}"
        )
    meta = {
        "mode": "default start",
        "covariance_type": "full",
        "max_iter": args.max_iter,
        "tol": args.tol,
        "reg_covar": 1e-6,
        "seeds": args.seeds,
        "repeats": f"best of {max(args.repeats, 5)} below N=20,000, else {args.repeats}",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "note": "ours init='kmeans' vs sklearn init_params='kmeans'; ratio = ours / sklearn wall time of fit",
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


DEFAULT_OUT = "benchmarks/results/gmm.json"


def main() -> None:
    """Run the benchmark, print the table and write the JSON file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="data points (synthetic sets)")
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument(
        "--default-start",
        action="store_true",
        help="each estimator from its own default start (k-means) on iris, wine, digits-PCA10, synthetic",
    )
    p.add_argument("--seeds", type=int, default=5, help="--default-start: seeds 0..S-1")
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
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args()
    torch.set_num_threads(args.torch_threads)
    if args.default_start:
        main_default_start(args)
        return
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
