"""EBM benchmark: exact (quadrature) log-likelihood on moons beside a spline flow, mode coverage of
SGLD samples on ring and grid, AIS log-likelihood and Frechet distance on digits, in one run.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/ebm.py
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/ebm.py --parts moons --methods pcd,dsm

Every model is a run of the registered family (``pyro_gen.runs.run_fit``: the same code as
``pyro-gen fit``), its folder under ``--out`` (default ``runs/ebm-benchmark``); a part whose
folder already holds a finished run with the same settings is read back, not retrained, so an
interrupted benchmark continues where it stopped.

* ``moons``: the flow family's default spline flow (the reference, trained here) and one EBM
  per ``--methods`` entry; target: the EBM's exact held-out log-likelihood within 0.05 nats of
  the flow's (about -0.30 nats per point).
* ``ring``, ``grid``: PacGAN's mixtures; target: every mode covered by 2,500 SGLD samples with at
  least 90% of them high quality (within 3 standard deviations of a mode). Published GAN and
  PacGAN figures (Lin et al. 2018, Table 1 [P]) are printed beside.
* ``digits``: binarized 8x8 digits (dynamic binarization, as ``compare families``), an EBM
  (dequantized binary pixels: an AIS estimate of a lower bound) and the flow family on the same
  binary pixels (``--pixels data``, also a dequantized bound) trained here; Frechet distance of
  1,000 samples on one feature classifier for both, with the train-vs-test floor.

Prints one table per part and writes ``benchmarks/results/ebm.json`` and ``ebm.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
TARGET_GAP = 0.05
TARGET_HQ = 0.9
# Lin et al. 2018, Table 1 [P]: modes captured (of 8 / 25) and high-quality share
PUBLISHED = {
    "ring": {"GAN": (6.3, 0.982), "PacGAN4": (7.8, 0.959)},
    "grid": {"GAN": (17.3, 0.948), "PacGAN4": (24.8, 0.936)},
}
# per-method settings used on 2-D data (training budget and objective settings)
METHOD_OPTIONS = {
    "pcd": {"options": {"method": "pcd"}, "epochs": 60, "lr": 3e-3, "lr_schedule": "cosine"},
    "dsm": {"options": {"method": "dsm", "sigma": 0.05}, "epochs": 80, "lr": 3e-3, "lr_schedule": "cosine"},
    "ssm": {"options": {"method": "ssm"}, "epochs": 60, "lr": 3e-3, "lr_schedule": "cosine"},
    "nce": {"options": {"method": "nce"}, "epochs": 80, "lr": 5e-3, "lr_schedule": "cosine"},
    # the earlier default noise: a 16-component Gaussian mixture
    "nce-gmm": {
        "options": {"method": "nce", "noise": "gmm"},
        "epochs": 80,
        "lr": 5e-3,
        "lr_schedule": "cosine",
    },
    # a longer PCD run with a weaker regularizer and SGLD steps decaying within each training step
    "pcd-long": {
        "options": {"method": "pcd", "alpha": 0.01, "sgld_steps": 40, "sgld_step_min": 1e-4},
        "epochs": 150,
        "lr": 3e-3,
        "lr_schedule": "cosine",
    },
    # the ring and grid's multi-noise DSM (twelve levels from 3 to 0.01) on moons
    "dsm-multi": {
        "options": {"method": "dsm", "sigma": 0.01, "sigma_max": 3.0, "num_sigmas": 12},
        "epochs": 80,
        "lr": 3e-3,
        "lr_schedule": "cosine",
    },
    "dsm-long": {
        "options": {"method": "dsm", "sigma": 0.03},
        "epochs": 300,
        "lr": 3e-3,
        "lr_schedule": "cosine",
    },
}


# ring and grid (modes of std 0.01 / 0.05): a weak regularizer, so that the energy can be sharp,
# SGLD steps decaying from 1e-2 to 1e-5 within each training step and in the sampler
MODE_OPTIONS = {
    "pcd": {
        "options": {
            "method": "pcd",
            "alpha": 0.001,
            "sgld_steps": 40,
            "sgld_step_min": 1e-5,
            "sample_steps": 1000,
            "sample_step_min": 1e-5,
        },
        "epochs": 40,
        "lr": 3e-3,
        "lr_schedule": "cosine",
    },
    # twelve noise levels from 3 (about the data's diameter) to 0.01 (Song & Ermon 2019),
    # annealed Langevin sampling: 2,000 steps from 0.1 to 1e-4, one block per level
    "dsm": {
        "options": {
            "method": "dsm",
            "sigma": 0.01,
            "sigma_max": 3.0,
            "num_sigmas": 12,
            "sample_steps": 2000,
            "sample_step": 0.1,
            "sample_step_min": 1e-4,
        },
        "epochs": 1200,
        "lr": 3e-3,
        "lr_schedule": "cosine",
    },
}


def _fit(name: str, family: str, data: str, out: Path, args, **kw) -> tuple[dict, float]:
    """Return (metrics, wall seconds) of a run, read back when its folder already holds it."""
    from pyro_gen.runs import run_fit

    folder = out / name
    want = json.dumps({"family": family, "data": data, **kw}, sort_keys=True, default=str)
    stamp = folder / "benchmark-settings.json"
    if args.reuse and stamp.is_file() and stamp.read_text() == want and (folder / "metrics.json").is_file():
        print(f"[ebm] {name}: reusing {folder}", flush=True)
        return json.loads((folder / "metrics.json").read_text()), 0.0
    print(f"[ebm] {name}: training {family} on {data} {kw}", flush=True)
    started = time.perf_counter()
    metrics = run_fit(
        family, data, out=folder, overwrite=True, progress=not args.no_progress, seed=args.seed, **kw
    )
    stamp.write_text(want)
    return metrics, time.perf_counter() - started


def _row_costs(m: dict, wall: float) -> dict:
    return {
        "train_seconds": m.get("seconds"),
        "steps": m.get("steps"),
        "eval_seconds": m.get("eval_seconds"),
        "wall_seconds": wall,
    }


def part_moons(args, out: Path) -> dict:
    """Return the moons rows: the reference flow and one EBM per method, exact held-out log-likelihoods."""
    flow, wall = _fit("moons-flow", "flow", "moons", out, args)
    ref = flow["test_log_likelihood"]
    rows = [
        {
            "model": "flow (spline, default)",
            "test_log_likelihood": ref,
            "likelihood_kind": "exact",
            **_row_costs(flow, wall),
        }
    ]
    for method in args.methods:
        spec = dict(METHOD_OPTIONS[method])
        m, wall = _fit(f"moons-ebm-{method}", "ebm", "moons", out, args, **spec)
        ll = m["test_log_likelihood"]
        rows.append(
            {
                "model": f"ebm {method}",
                "test_log_likelihood": ll,
                "likelihood_kind": m["likelihood_kind"],
                "gap_to_flow": ll - ref,
                "target_met": bool(abs(ll - ref) <= TARGET_GAP or ll > ref),
                "quadrature_error": m.get("quadrature_error"),
                "edge_mass": m.get("quadrature_edge_mass"),
                "nce_log_z_error": m.get("nce_log_z_error"),
                "settings": spec,
                **_row_costs(m, wall),
            }
        )
    return {
        "reference_gmm50": flow.get("reference_gmm50"),
        "reference_gaussian": flow.get("reference_gaussian"),
        "rows": rows,
    }


def part_modes(args, out: Path, data: str) -> dict:
    """Return the ring or grid rows: mode coverage of each EBM's SGLD samples."""
    rows = []
    for method in args.mode_methods:
        spec = dict(MODE_OPTIONS[method])
        m, wall = _fit(f"{data}-ebm-{method}", "ebm", data, out, args, **spec)
        rows.append(
            {
                "model": f"ebm {method}",
                "modes_captured": m.get("modes_captured"),
                "num_modes": m.get("num_modes"),
                "high_quality_share": m.get("high_quality_share"),
                "kl_to_uniform": m.get("kl_to_uniform"),
                "test_log_likelihood": m.get("test_log_likelihood"),
                "target_met": bool(
                    m.get("modes_captured") == m.get("num_modes")
                    and (m.get("high_quality_share") or 0) >= TARGET_HQ
                ),
                "settings": spec,
                **_row_costs(m, wall),
            }
        )
    return {"rows": rows, "published": PUBLISHED[data]}


def part_digits(args, out: Path) -> dict:
    """Return the digits rows: AIS-estimated EBM and the flow on the same binary pixels, Frechet distances."""
    import dataclasses

    from pyro_gen.data import load_data
    from pyro_gen.evaluation.samples import feature_classifier_for, frechet_distance
    from pyro_gen.runs import load_run

    ebm_spec = {"options": {"method": "pcd"}, "epochs": args.digits_epochs, "lr": 1e-3, "binarize": "dynamic"}
    runs = {
        "ebm pcd (conv)": ("digits-ebm-pcd", "ebm", ebm_spec),
        "flow (spline, binary pixels)": (
            "digits-flow",
            "flow",
            {"options": {"pixels": "data"}, "binarize": "dynamic"},
        ),
    }
    data = load_data("digits", binarize="dynamic", seed=args.seed)
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        train_bin = data.batch_transform(data.train)
    clf = feature_classifier_for(dataclasses.replace(data, train=train_bin), seed=args.seed)
    n = 1000
    floor = frechet_distance(train_bin[:n], data.test, clf.features)
    rows = []
    for label, (name, family, spec) in runs.items():
        m, wall = _fit(name, family, "digits", out, args, **spec)
        model, _ = load_run(out / name)
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(args.seed + 1)
            samples = model.sample(n).float().reshape(n, -1)
        rows.append(
            {
                "model": label,
                "test_bits_per_dim": m.get("test_bits_per_dim"),
                "test_log_likelihood": m.get("test_log_likelihood"),
                "likelihood_kind": m.get("likelihood_kind"),
                "log_z_std": m.get("log_z_std"),
                "ais_ess": m.get("ais_ess"),
                "frechet_distance": frechet_distance(samples, data.test, clf.features),
                **_row_costs(m, wall),
            }
        )
    earlier = None
    fam = RESULTS / "families.json"
    if fam.is_file():
        rows_before = json.loads(fam.read_text()).get("families", {}).get("rows", [])
        earlier = [
            {k: r.get(k) for k in ("family", "test_bits_per_dim", "likelihood_kind", "frechet_distance")}
            for r in rows_before
        ]
    return {
        "rows": rows,
        "frechet_distance_train_vs_test": floor,
        "feature_classifier_accuracy": clf.accuracy_,
        "families_json_full_budget": earlier,
    }


def _f(v, spec=".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _line(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _header(*names) -> list[str]:
    return [_line(*names), _line(*(["---"] * len(names)))]


def format_tables(res: dict) -> str:
    """Return the benchmark's tables as Markdown."""
    load = f"load before: {res['load_before']}; after: {res.get('load_after')}"
    lines = ["# EBM benchmark", "", f"Machine: {res['machine']}; {load}.", ""]
    if "moons" in res:
        mo = res["moons"]
        lines += ["## moons: exact held-out log-likelihood (nats per point)", ""]
        lines += _header(
            "model", "test log-lik", "kind", "gap to flow", "within 0.05", "quad. error", "train s"
        )
        for r in mo["rows"]:
            tm = "-" if "target_met" not in r else ("met" if r["target_met"] else "not met")
            lines.append(
                _line(
                    r["model"],
                    _f(r["test_log_likelihood"]),
                    r["likelihood_kind"],
                    _f(r.get("gap_to_flow")),
                    tm,
                    _f(r.get("quadrature_error"), ".1e"),
                    _f(r["train_seconds"], ".0f"),
                )
            )
        gmm, gauss = _f(mo["reference_gmm50"]), _f(mo["reference_gaussian"])
        lines += ["", f"References fitted in the same run: 50-component GMM {gmm}, Gaussian {gauss}.", ""]
    for part in ("ring", "grid"):
        if part not in res:
            continue
        p = res[part]
        lines += [f"## {part}: mode coverage of 2,500 SGLD samples", ""]
        lines += _header(
            "model", "modes", "high-quality share", "KL to uniform", "test log-lik", "target", "train s"
        )
        for r in p["rows"]:
            lines.append(
                _line(
                    r["model"],
                    f"{r['modes_captured']}/{r['num_modes']}",
                    _f(r["high_quality_share"]),
                    _f(r["kl_to_uniform"]),
                    _f(r["test_log_likelihood"]),
                    "met" if r["target_met"] else "not met",
                    _f(r["train_seconds"], ".0f"),
                )
            )
        for name, (modes, hq) in p["published"].items():
            lines.append(_line(f"{name} (published, Lin et al. 2018 [P])", modes, hq, "-", "-", "-", "-"))
        lines.append("")
    if "digits" in res:
        d = res["digits"]
        lines += ["## digits (binarized): test NLL and Frechet distance (1,000 samples)", ""]
        lines += _header(
            "model", "bits/dim", "NLL is", "log Z std over AIS runs", "Frechet distance", "train s"
        )
        for r in d["rows"]:
            lines.append(
                _line(
                    r["model"],
                    _f(r["test_bits_per_dim"], ".4f"),
                    r["likelihood_kind"],
                    _f(r.get("log_z_std")),
                    _f(r["frechet_distance"], ".2f"),
                    _f(r["train_seconds"], ".0f"),
                )
            )
        floor = _f(d["frechet_distance_train_vs_test"], ".2f")
        lines += ["", f"Floor: Frechet distance of binarized training images to the test set {floor}."]
        if d.get("families_json_full_budget"):
            lines += ["", "Earlier `benchmarks/families.py` run (full budget, its own classifier):", ""]
            lines += _header("family", "bits/dim", "NLL is", "Frechet distance")
            for r in d["families_json_full_budget"]:
                lines.append(
                    _line(
                        r["family"],
                        _f(r["test_bits_per_dim"], ".4f"),
                        r["likelihood_kind"] or "-",
                        _f(r["frechet_distance"], ".2f"),
                    )
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the parts named by ``--parts``; print the tables; write the JSON and Markdown."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="moons,ring,grid,digits")
    p.add_argument(
        "--methods",
        default="pcd,dsm,ssm,nce",
        help="EBM methods on moons (also pcd-long, dsm-long, dsm-multi, nce-gmm)",
    )
    p.add_argument("--mode-methods", default="pcd,dsm", help="EBM methods on ring and grid")
    p.add_argument("--digits-epochs", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/ebm-benchmark")
    p.add_argument("--results", default=str(RESULTS / "ebm.json"))
    p.add_argument("--reuse", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    args.methods = [m for m in args.methods.split(",") if m]
    args.mode_methods = [m for m in args.mode_methods.split(",") if m]
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = Path(args.results)
    res = json.loads(results_path.read_text()) if results_path.is_file() else {}
    res.update(
        machine=f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread",
        load_before=" ".join(f"{x:.2f}" for x in os.getloadavg()),
        seed=args.seed,
    )
    started = time.perf_counter()
    for part in args.parts.split(","):
        if part == "moons":
            res["moons"] = part_moons(args, out)
        elif part in ("ring", "grid"):
            res[part] = part_modes(args, out, part)
        elif part == "digits":
            res["digits"] = part_digits(args, out)
        else:
            raise SystemExit(f"unknown part {part!r}")
        res["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        res["seconds"] = time.perf_counter() - started
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(res, indent=2, default=str))
        results_path.with_suffix(".md").write_text(format_tables(res))
    print(format_tables(res))


if __name__ == "__main__":
    main()
