"""Flow benchmark: held-out log-likelihood and time per step of every Pyro transform vs zuko, in one run.

    .venv/bin/python benchmarks/flows.py --part density --data moons --steps 1500
    .venv/bin/python benchmarks/flows.py --part digits --epochs 30
    .venv/bin/python benchmarks/flows.py --part guides --epochs 30

``density``: on each 2-D set, a single full-covariance Gaussian and a 50-component
scikit-learn mixture (references, fitted in this run), then each Pyro transform and zuko's
NSF and MAF with the same depth, conditioner widths, optimizer, batch and number of steps.
``digits``: bits/dim of dequantized 8x8 digits (17 grey levels) for the same flows.
``guides``: VAE on binarized digits with a mean-field guide vs IAF / planar flow guides
(same decoder, same steps): held-out ELBO and IS log-likelihood.
Prints a table per part and writes ``benchmarks/results/flows_<part>.json``.
Time per step is training wall time / steps on this machine; ``vs zuko`` divides it by the
zuko flow of the same kind (NSF for splines, MAF otherwise) measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import pyro
import torch

from pyro_gen.data import load_data
from pyro_gen.families.flow import reference_log_likelihoods
from pyro_gen.inference import TrainingDivergedError, fit
from pyro_gen.models.flows import TRANSFORMS, FlowDensity, make_zuko_flow

RESULTS = Path(__file__).parent / "results"


def _train(flow: FlowDensity, data, steps: int | None, epochs: float | None, args) -> float | None:
    """Train; return seconds per step, or None when the loss diverged (reported in the row)."""
    pyro.set_rng_seed(args.seed)
    try:
        res = _fit(flow, data, steps, epochs, args)
    except TrainingDivergedError as e:
        print(f"  diverged: {e}", flush=True)
        flow.diverged_ = str(e)
        return None
    return res.seconds / res.steps


def _fit(flow: FlowDensity, data, steps: int | None, epochs: float | None, args):
    return fit(
        flow,
        data.train,
        steps=steps,
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule="cosine",
        seed=args.seed,
        progress=not args.no_progress,
    )


# Each Pyro transform against the zuko flow built the same way (same depth, bins, bound,
# optimizer, batch and steps): ``passes=2`` makes zuko's masked transforms coupling layers.
ZUKO_TWIN: dict[str, tuple[str, int | None] | None] = {
    "planar": None,  # zuko has no planar or radial flow
    "radial": None,
    "affine_coupling": ("maf", 2),
    "spline_coupling": ("nsf", 2),
    "spline_autoregressive": ("nsf", None),
    "maf": ("maf", None),
    "naf": ("naf", None),
}


def _pyro_flow(name: str, dim: int, hidden: list[int], args, num_levels) -> FlowDensity:
    depth = args.depth * (4 if name in ("planar", "radial") else 1)  # O(D)-parameter blocks
    torch.manual_seed(args.seed)  # the initialisation does not depend on the rows before
    return FlowDensity(
        dim,
        name,
        depth,
        hidden,
        count_bins=args.bins,
        bound=args.bound,
        spline_both_halves=args.spline_both_halves,
        num_levels=num_levels,
        alpha=0.05,
        seed=args.seed,
    )


def _zuko_flow(twin: tuple[str, int | None], dim: int, hidden: list[int], args, num_levels) -> FlowDensity:
    torch.manual_seed(args.seed)
    zf = make_zuko_flow(twin[0], dim, args.depth, hidden, args.bins, passes=twin[1])
    return FlowDensity(dim, zuko_flow=zf, num_levels=num_levels, alpha=0.05)


def _matched_hidden(name: str, dim: int, target: int, layers: int, args, num_levels) -> list[int]:
    """Conditioner widths (``layers`` equal layers) whose parameter count is closest to ``target``."""
    lo, hi = 2, 4096
    while hi - lo > 1:  # the count grows with the width: bisect
        mid = (lo + hi) // 2
        n = _pyro_flow(name, dim, [mid] * layers, args, num_levels).num_parameters()
        lo, hi = (mid, hi) if n <= target else (lo, mid)
    counts = {w: _pyro_flow(name, dim, [w] * layers, args, num_levels).num_parameters() for w in (lo, hi)}
    return [min(counts, key=lambda w: abs(counts[w] - target))] * layers


def _flows(dim: int, args, num_levels=None, skip=()):
    """Yield ``(row_name, flow, twin_row_name)``: each zuko twin first, then the Pyro flow whose
    conditioner widths match the twin's parameter count (``--hidden`` when there is no twin)."""
    hidden = [int(h) for h in args.hidden.split(",")]
    names = args.transforms.split(",") if args.transforms else list(TRANSFORMS)
    done: set[str] = set()
    for name in names:
        if name in skip:
            continue
        twin = None if args.no_zuko else ZUKO_TWIN.get(name)
        if twin is None:
            yield name, _pyro_flow(name, dim, hidden, args, num_levels), None
            continue
        twin_name = f"zuko-{twin[0]}" + ("-coupling" if twin[1] == 2 else "")
        zflow = _zuko_flow(twin, dim, hidden, args, num_levels)
        if twin_name not in done:
            done.add(twin_name)
            yield twin_name, zflow, None
        matched = _matched_hidden(name, dim, zflow.num_parameters(), len(hidden), args, num_levels)
        yield name, _pyro_flow(name, dim, matched, args, num_levels), twin_name


def _vs_zuko(rows: list[dict]) -> None:
    """Add each Pyro row's time and log-likelihood relative to its zuko twin (same run)."""
    by_name = {r["flow"]: r for r in rows}
    for r in rows:
        twin = by_name.get(r.get("zuko_twin") or "")
        if twin is None or "ms_per_step" not in twin or "ms_per_step" not in r:
            continue
        r["time_vs_zuko"] = r["ms_per_step"] / twin["ms_per_step"]
        r["ll_minus_zuko"] = r["test_log_likelihood"] - twin["test_log_likelihood"]
        # "within 2% of zuko's test log-likelihood": the shortfall relative to |zuko's value|
        shortfall = max(0.0, -r["ll_minus_zuko"])
        r["ll_within_2pct"] = shortfall <= 0.02 * abs(twin["test_log_likelihood"])
        r["no_slower"] = r["time_vs_zuko"] <= 1.0


def part_density(args) -> dict:
    out = {}
    for spec in args.data.split(","):
        data = load_data(spec, seed=args.seed)
        rows = []
        t0 = time.perf_counter()
        refs = reference_log_likelihoods(data.train, data.test, args.seed)
        ref_seconds = time.perf_counter() - t0
        rows.append({"flow": "gaussian (sklearn)", "test_log_likelihood": refs["reference_gaussian"]})
        rows.append({"flow": "gmm50 (sklearn)", "test_log_likelihood": refs["reference_gmm50"]})
        for name, flow, twin in _flows(2, args):
            flow.init_from_data(data.train)
            sec = _train(flow, data, args.steps, None, args)
            if sec is None:
                rows.append({"flow": name, "diverged": flow.diverged_, "zuko_twin": twin})
                continue
            with torch.no_grad():
                ll = float(flow.log_likelihood(data.test).mean())
            rows.append(
                {
                    "flow": name,
                    "depth": flow.depth if flow.zuko_flow is None else args.depth,
                    "hidden": flow.config["hidden"] if flow.zuko_flow is None else args.hidden,
                    "num_parameters": flow.num_parameters(),
                    "test_log_likelihood": ll,
                    "ms_per_step": 1000 * sec,
                    "zuko_twin": twin,
                }
            )
            print(f"  {spec} {name}: {ll:.3f} nats, {1000 * sec:.1f} ms/step", flush=True)
        _vs_zuko(rows)
        out[spec] = {"rows": rows, "reference_seconds": ref_seconds, "steps": args.steps}
        _table(f"{spec}: held-out log-likelihood (nats/point), {args.steps} steps", rows)
    return out


def part_digits(args) -> dict:
    data = load_data("digits", binarize=None, seed=args.seed)
    rows = []
    # planar/radial are too weak in 64-D; NAF samples by bisection
    for name, flow, twin in _flows(data.dim, args, num_levels=17, skip=("planar", "radial", "naf")):
        flow.init_from_data(data.train)
        sec = _train(flow, data, None, args.epochs, args)
        if sec is None:
            rows.append({"flow": name, "diverged": flow.diverged_, "zuko_twin": twin})
            continue
        torch.manual_seed(args.seed)
        with torch.no_grad():
            ll = float(flow.log_likelihood(data.test, num_samples=16).mean())
        rows.append(
            {
                "flow": name,
                "hidden": flow.config["hidden"] if flow.zuko_flow is None else args.hidden,
                "num_parameters": flow.num_parameters(),
                "test_log_likelihood": ll,
                "test_bits_per_dim": -ll / (data.dim * math.log(2)),
                "ms_per_step": 1000 * sec,
                "zuko_twin": twin,
            }
        )
        print(f"  digits {name}: {rows[-1]['test_bits_per_dim']:.3f} bits/dim", flush=True)
    _vs_zuko(rows)
    _table(f"digits (17 levels, dequantized, IS over 16 noise draws), {args.epochs} epochs", rows)
    return {"digits": {"rows": rows, "epochs": args.epochs, "uniform_bits_per_dim": math.log2(17)}}


def part_guides(args) -> dict:
    from pyro_gen.experiments.flow_guides import compare_guides

    data = load_data("digits", binarize="dynamic", seed=args.seed)
    rows = compare_guides(
        data,
        flows=("iaf", "planar"),
        num_flows=args.num_flows,
        latent_dim=args.latent_dim,
        epochs=args.epochs,
        k=args.k,
        seed=args.seed,
        progress=not args.no_progress,
    )
    for r in rows:
        r["ms_per_step"] = 1000 * r["seconds"] / r["steps"]
    _table(f"VAE guides on binarized digits, {args.epochs} epochs, IS k={args.k}", rows)
    return {"guides": {"rows": rows, "epochs": args.epochs, "k": args.k, "latent_dim": args.latent_dim}}


def _table(title: str, rows: list[dict]) -> None:
    keys = [k for k in rows[-1] if k not in ("seconds",)]
    for r in rows:
        keys += [k for k in r if k not in keys and k != "seconds"]
    print(f"\n{title}")
    print(" | ".join(f"{k:>20}" for k in keys))
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k)
            cells.append(f"{v:>20.4f}" if isinstance(v, float) else f"{'' if v is None else v!s:>20}")
        print(" | ".join(cells))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", default="density", choices=["density", "digits", "guides"])
    p.add_argument("--data", default="moons", help="2-D sets, comma-separated: moons,ring,grid")
    p.add_argument("--transforms", default="", help=f"subset of {','.join(TRANSFORMS)} (default all)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--epochs", type=float, default=30)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--hidden", default="64,64")
    p.add_argument("--bins", type=int, default=8)
    p.add_argument("--bound", type=float, default=5.0, help="spline interval [-B, B] (zuko's default 5)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--num-flows", type=int, default=4)
    p.add_argument("--latent-dim", type=int, default=8)
    p.add_argument("--k", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-zuko", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--spline-both-halves", action="store_true", help="spline coupling option")
    p.add_argument("--tag", default="", help="suffix of the JSON file name (keeps other runs' files)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.part == "guides":
        args.lr = min(args.lr, 1e-3)
        args.batch_size = 128
    t0 = time.perf_counter()
    result = {"part": args.part, "settings": vars(args)}
    result.update({"density": part_density, "digits": part_digits, "guides": part_guides}[args.part](args))
    result["seconds"] = time.perf_counter() - t0
    result["machine"] = {
        "platform": platform.platform(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "threads": torch.get_num_threads(),
        "note": "2-core shared CPU (several agents at once): compare times only within one run",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = args.data.replace(",", "-") if args.part == "density" else args.part
    path = RESULTS / f"flows_{suffix}{'_' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
