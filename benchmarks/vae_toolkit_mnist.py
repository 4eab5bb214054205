"""VAE toolkit on binarized MNIST: every learned prior and every bound at one stated budget.

One command (one torch thread; sized from a pilot at load 4 on 2 cores to about an hour: 5
epochs a row, about 6 minutes an epoch for all ten rows and 1.5 minutes of evaluation a row;
several times longer when other jobs hold the cores at normal priority; resumable: a rerun
skips every row already in the JSON with the same settings and continues a row whose run
folder holds a checkpoint of the same settings):

    OMP_NUM_THREADS=1 nohup nice -n 10 .venv/bin/python benchmarks/vae_toolkit_mnist.py \\
        > runs/vae_toolkit_mnist.log 2>&1 &

Every row is a ``pyro-gen fit vae`` run (``pyro_gen.runs.run_fit``, run folders under
``--runs``) of Burda et al.'s one-layer VAE, 784-200-200-50 with tanh units, a Gaussian guide
and a Bernoulli decoder whose output bias starts at the logit of the training mean
(``--hidden 200,200 --latent-dim 50 --activation tanh``), on ``mnist:DIR`` dynamically
binarized (a fresh Bernoulli draw of every training image at every minibatch; the test set
binarized once with the seed). All rows share the seed, the initialization of the shared
networks, the minibatch order and the budget (``--epochs`` epochs, batch 100, Adam 1e-3):

- ``elbo`` (the reference): N(0, I) prior, the ELBO (``reparam``: one sample);
- one row per learned prior, trained with the ELBO: ``mog`` (10 components), ``vamp``
  (``--vamp-components`` pseudo-inputs started at training images), ``flow`` (4 MAF blocks);
- one row per bound, N(0, I) prior, every bound with ``--samples`` = M x K samples per data
  point (default 4x4 = 16): ``iwae:16``, ``dreg:16``, ``miwae:4x4``, ``piwae:4x4``,
  ``ciwae:16:0.5``, ``renyi:16:0.5``.

Columns: test log p(x) by importance sampling with ``--k`` samples (5000) on the first
``--eval-points`` test images (1,000), nats per image; the test ELBO on the same images;
active units (Burda et al. 2016: Var_x E_q[z_u | x] > 0.01, on the same images); KL(q(z|x) ||
p(z)) averaged over the same images, nats (closed form for N(0, I), else a Monte Carlo mean of
``--kl-samples`` draws per image); training wall seconds and ms per step. The table also shows
the digits (8x8) figure of the same prior or bound where ``benchmarks/results/vae_toolkit.json``
and ``benchmarks/results/bounds.json`` hold one (another network, 64-256-16 ReLU, 200 epochs or
2,000 steps: read those across rows, not against the MNIST column) and the published MNIST
figures (REFERENCES.md), all trained for thousands of epochs: far beyond this budget.

A smoke run (a few steps, 20 test images, k=50; about two minutes):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vae_toolkit_mnist.py --steps 5 \\
        --eval-points 20 --k 50 --runs runs/vae_toolkit_mnist_smoke --out /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path("benchmarks/results")

BASE = {"hidden": "200,200", "latent_dim": 50, "activation": "tanh", "likelihood": "bernoulli"}

# Published test log p(x) on dynamically binarized MNIST, nats per image (REFERENCES.md):
# [S] the paper as quoted, [R] a third party's re-run. None of them is at 16 samples per point.
PUBLISHED = {
    "elbo": "-86.76 [S] / -86.35 [R] (Burda et al. VAE, k=1)",
    "mog": "-",
    "vamp": "-85.57 [S] / -85.79 [R] (Tomczak & Welling, K=500)",
    "flow": "-",
    "iwae": "k=5: -85.54 [S] / -85.18 [R]; k=50: -84.78 [S] / -84.59 [R] (Burda et al. IWAE)",
    "dreg": "k=5: -84.90 [R]; k=50: -84.32 [R] (DReG)",
    "miwae": "-84.97 [S] / -85.09 [R] (MIWAE(8,8))",
    "piwae": "-84.46 [S] / -84.58 [R] (PIWAE(8,8))",
    "ciwae": "-84.57 [S] / -84.74 [R] (CIWAE beta=0.05, 64 samples)",
    "renyi": "-",
}


def row_specs(samples: str, vamp_components: int) -> list[dict[str, Any]]:
    """Return the benchmark's rows: ``name``, ``kind`` (reference, prior, bound), the family
    ``options`` and the ``estimator``, the reference first."""
    m, sep, k = samples.partition("x")
    if not sep or not (m.isdigit() and k.isdigit()) or int(m) < 1 or int(k) < 1:
        raise ValueError(f"--samples must be MxK with positive integers (e.g. 4x4), got {samples!r}")
    m, k = int(m), int(k)
    n = m * k
    if n < 2:
        raise ValueError(f"--samples {samples!r}: a bound needs at least 2 samples per data point")
    if vamp_components < 1:
        raise ValueError(f"--vamp-components must be a positive integer, got {vamp_components}")
    rows = [
        {"name": "elbo", "kind": "reference", "options": {}, "estimator": "reparam"},
        {"name": "mog", "kind": "prior", "options": {"prior": "mog", "prior_components": 10}},
        {
            "name": "vamp",
            "kind": "prior",
            "options": {"prior": "vamp", "prior_components": vamp_components, "vamp_init": "data"},
        },
        {
            "name": "flow",
            "kind": "prior",
            "options": {"prior": "flow", "prior_flow": "maf", "prior_flow_depth": 4},
        },
    ]
    for r in rows[1:]:
        r["estimator"] = "reparam"
    for spec in (
        f"iwae:{n}",
        f"dreg:{n}",
        f"miwae:{m}x{k}",
        f"piwae:{m}x{k}",
        f"ciwae:{n}:0.5",
        f"renyi:{n}:0.5",
    ):
        rows.append({"name": spec, "kind": "bound", "options": {}, "estimator": spec})
    for r in rows:
        r["options"] = {**BASE, **r["options"]}
    return rows


def row_settings(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Return every setting a row's numbers depend on (a saved row with equal settings is reused)."""
    return {
        "data": f"mnist:{args.mnist}",
        "options": spec["options"],
        "estimator": spec["estimator"],
        "epochs": args.epochs,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "k": args.k,
        "eval_points": args.eval_points,
        "kl_samples": args.kl_samples,
    }


def load_results(path: Path, fresh: bool = False) -> dict[str, Any]:
    """Return the saved results at ``path`` (``{"rows": [...]}``; empty when absent or ``fresh``);
    ``ValueError`` naming the file when it is not such a JSON."""
    if fresh or not path.exists():
        return {"rows": []}
    try:
        payload = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not JSON ({err}): delete it or pass --fresh") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
        raise ValueError(f"{path} holds no 'rows' list: delete it or pass --fresh")
    return payload


def find_row(payload: dict[str, Any], name: str, settings: dict[str, Any]) -> dict[str, Any] | None:
    """Return the saved row called ``name`` measured with exactly ``settings``, else None."""
    for row in payload["rows"]:
        if row.get("name") == name and row.get("settings") == settings:
            return row
    return None


def put_row(payload: dict[str, Any], row: dict[str, Any]) -> None:
    """Put ``row`` into ``payload["rows"]``, replacing a row of the same name."""
    payload["rows"] = [r for r in payload["rows"] if r.get("name") != row["name"]] + [row]


def save_results(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)


def _continue(out: Path, settings: dict[str, Any]) -> dict[str, bool]:
    """Resume a run folder trained with the same settings; start any other one anew."""
    marker = out / "benchmark_settings.json"
    same = marker.is_file() and json.loads(marker.read_text()) == settings
    resume = same and (out / "checkpoint.pt").is_file()
    return {"resume": resume, "overwrite": not resume}


def _latent_numbers(
    out: Path, points: int, kl_samples: int, seed: int, components: int = 1
) -> dict[str, Any]:
    """Return active units and the mean KL(q(z|x) || p(z)) (nats) on the first ``points`` test images."""
    import torch

    from pyro_gen.diagnostics.variational import active_units
    from pyro_gen.runs import load_run, load_run_data

    model, config = load_run(out)
    data = load_run_data(config)
    x = data.test[:points]
    model.eval()
    au = active_units(model, x)
    # points per chunk so that a mixture prior's (samples, points, components, latent) stays small
    chunk = max(1, int(2e7 // (kl_samples * components * au["num_units"])))
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        kl = torch.cat(
            [model.kl_to_prior(x[i : i + chunk], num_samples=kl_samples) for i in range(0, len(x), chunk)]
        )
    return {
        "active_units": au["num_active"],
        "latent_dim": au["num_units"],
        "kl": float(kl.mean()),
        "latent_points": int(x.shape[0]),
    }


def run_row(spec: dict[str, Any], settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate one row through ``pyro_gen.runs.run_fit``; return its numbers."""
    from pyro_gen.runs import run_fit

    out = Path(args.runs) / spec["name"].replace(":", "_")
    cont = _continue(out, settings)
    if cont["overwrite"] and out.exists():
        print(f"[vae_toolkit_mnist] {spec['name']}: starting {out} anew", flush=True)
    t0 = time.perf_counter()
    load_start = list(os.getloadavg())
    budget = {"epochs": args.epochs} if args.steps is None else {"steps": args.steps}
    metrics = run_fit(
        "vae",
        settings["data"],
        out=out,
        options=spec["options"],
        estimator=spec["estimator"],
        seed=args.seed,
        k=args.k,
        eval_points=args.eval_points,
        binarize="dynamic",
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer="adam",
        threads=1,
        eval_every=10**9,
        progress=not args.quiet,
        **budget,
        **cont,
    )
    (out / "benchmark_settings.json").write_text(json.dumps(settings, indent=2))
    keys = ("test_log_likelihood", "test_elbo", "train_elbo", "seconds", "cpu_seconds", "ms_per_step")
    keys += ("steps", "epochs", "k", "eval_points", "eval_seconds", "estimator")
    row = {"name": spec["name"], "kind": spec["kind"], "settings": settings, "run": str(out)}
    row.update({key: metrics.get(key) for key in keys})
    components = (
        int(spec["options"].get("prior_components", 1))
        if spec["options"].get("prior") in ("mog", "vamp")
        else 1
    )
    row.update(_latent_numbers(out, args.eval_points, args.kl_samples, args.seed, components))
    row.update(
        wall_seconds=time.perf_counter() - t0,
        load_average_start=load_start,
        load_average_end=list(os.getloadavg()),
    )
    return row


def _family(name: str) -> str:
    return name.split(":")[0]


def digits_figures(results: Path = RESULTS) -> dict[str, float]:
    """Return the digits (8x8) test log p(x) of each row name that the toolkit's and the bounds'
    result files hold (nats per image; empty where the files are absent)."""
    found: dict[str, float] = {}
    priors = {
        "vae-mlp-normal (reference)": "elbo",
        "vae-mlp-mog": "mog",
        "vae-mlp-vamp": "vamp",
        "vae-mlp-flow": "flow",
    }
    try:
        for r in json.loads((results / "vae_toolkit.json").read_text())["rows"]:
            if r.get("row") in priors and r.get("test_log_likelihood") is not None:
                found[priors[r["row"]]] = float(r["test_log_likelihood"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        for r in json.loads((results / "bounds.json").read_text())["vae"]:
            found[f"digits:{r['name']}"] = float(r["final"]["test_log_likelihood"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return found


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, int):
        return str(v)
    return f"{v:.{nd}f}"


def table(rows: list[dict[str, Any]], digits: dict[str, float] | None = None) -> str:
    """Return the markdown table of ``rows`` (nats per image, seconds, ms), with the digits
    figure of the same row (``digits_figures``) and the published MNIST figures beside."""
    digits = digits or {}
    lines = [
        "| row | test log p(x) | test ELBO | active units | KL | train s | ms/step "
        "| digits (8x8) log p(x) | published MNIST log p(x) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = r["name"]
        digit = digits.get(name) if r.get("kind") != "bound" else digits.get(f"digits:{name}")
        au = f"{r['active_units']}/{r['latent_dim']}" if r.get("active_units") is not None else "-"
        label = {"elbo": "ELBO, N(0, I) (reference)", "mog": "ELBO, MoG prior K=10"}.get(name)
        if name == "vamp":
            label = f"ELBO, VampPrior K={r['settings']['options']['prior_components']} (data init)"
        if name == "flow":
            label = "ELBO, flow prior (4 MAF blocks)"
        cells = [
            label or f"`{name}`, N(0, I)",
            _fmt(r.get("test_log_likelihood")),
            _fmt(r.get("test_elbo")),
            au,
            _fmt(r.get("kl")),
            _fmt(r.get("seconds"), 0),
            _fmt(r.get("ms_per_step"), 1),
            _fmt(digit),
            PUBLISHED.get(_family(name), "-"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Train and score every missing row, write the JSON, print the table; return 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist", default="../shared/data/mnist", help="folder of the MNIST IDX files")
    p.add_argument("--epochs", type=float, default=5.0, help="training epochs of every row")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps instead of --epochs (smoke runs)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--samples", default="4x4", help="MxK: samples per data point of every bound")
    p.add_argument(
        "--vamp-components", type=int, default=500, help="VampPrior pseudo-inputs (the paper: 500)"
    )
    p.add_argument("--k", type=int, default=5000, help="importance samples of the test log p(x)")
    p.add_argument("--eval-points", type=int, default=1000, help="first N test images evaluated")
    p.add_argument(
        "--kl-samples", type=int, default=64, help="Monte Carlo draws of the KL for learned priors"
    )
    p.add_argument("--rows", default=None, help="comma-separated row names to run (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="runs/vae_toolkit_mnist", help="folder of the rows' run folders")
    p.add_argument("--out", default=str(RESULTS / "vae_toolkit_mnist.json"))
    p.add_argument("--fresh", action="store_true", help="ignore rows already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    try:
        for flag in ("batch_size", "k", "eval_points", "kl_samples"):
            if getattr(args, flag) < 1:
                raise ValueError(
                    f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}"
                )
        if args.steps is not None and args.steps < 1:
            raise ValueError(f"--steps must be a positive integer, got {args.steps}")
        if not (args.epochs > 0 and math.isfinite(args.epochs)):
            raise ValueError(f"--epochs must be a positive number, got {args.epochs}")
        specs = row_specs(args.samples, args.vamp_components)
        if args.rows:
            wanted = [s for s in args.rows.split(",") if s]
            unknown = sorted(set(wanted) - {s["name"] for s in specs})
            if unknown:
                raise ValueError(
                    f"--rows: unknown row(s) {unknown}; the rows are {[s['name'] for s in specs]}"
                )
            specs = [s for s in specs if s["name"] in wanted]
        if not Path(args.mnist).is_dir():
            raise ValueError(f"--mnist {args.mnist!r} is not a folder (it holds the MNIST IDX files)")
        out = Path(args.out)
        payload = load_results(out, args.fresh)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.steps is not None:
        args.epochs = None
    import torch

    torch.set_num_threads(1)
    command = "benchmarks/vae_toolkit_mnist.py " + " ".join(sys.argv[1:] if argv is None else argv)
    payload.update(
        command=command.strip(),
        machine={
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": 1,
        },
        started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        load_average_start=list(os.getloadavg()),
        protocol=(
            f"test log p(x): importance sampling, k={args.k}, first {args.eval_points} test images "
            "(binarized once with the seed); active units and KL on the same images"
        ),
    )
    for spec in specs:
        settings = row_settings(spec, args)
        if find_row(payload, spec["name"], settings) is not None:
            print(f"[vae_toolkit_mnist] {spec['name']}: in {out}, skipped", flush=True)
            continue
        print(f"[vae_toolkit_mnist] {spec['name']}: training", flush=True)
        row = run_row(spec, settings, args)
        put_row(payload, row)
        payload["load_average_end"] = list(os.getloadavg())
        save_results(out, payload)
        print(
            f"[vae_toolkit_mnist] {spec['name']}: log p(x) {_fmt(row['test_log_likelihood'])}  "
            f"ELBO {_fmt(row['test_elbo'])}  AU {row['active_units']}/{row['latent_dim']}  "
            f"KL {_fmt(row['kl'])}  train {_fmt(row['seconds'], 0)} s",
            flush=True,
        )
    payload["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    payload["load_average_end"] = list(os.getloadavg())
    save_results(out, payload)
    order = [s["name"] for s in row_specs(args.samples, args.vamp_components)]
    rows = sorted(payload["rows"], key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
    print()
    print(table(rows, digits_figures()))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
