"""``pyro-gen compare families``: every family of deep generative model on one table.

Trains an autoregressive model (MADE, optionally PixelCNN), a normalizing flow, a VAE, a GAN
and an autoencoder on the same train/test split of the same binarized images (dynamic
binarization, the test set binarized once), each through its registered family and
:func:`pyro_gen.runs.run_fit` (so every family keeps its own trainer: SVI, maximum likelihood,
the adversarial loop, the autoencoder loop), then writes one report:

* test negative log-likelihood in bits/dim where the family has one, marked ``exact``
  (autoregressive), ``bound`` (dequantized flow: a lower bound on the discrete likelihood) or
  ``estimate`` (VAE: importance sampling with ``k`` samples, itself a stochastic lower bound);
* the Frechet distance of ``num_samples`` samples to the test images on the features of a
  small digit classifier (:func:`pyro_gen.inference.metrics.frechet_distance`), for every
  family that samples, with the train-vs-test distance as the floor;
* linear-probe accuracy (logistic regression on encoder features) for every family with an
  encoder (VAE means, autoencoder codes), with the raw-pixel probe as reference;
* training wall time (seconds), and the sample grids side by side.

Families are discovered through the registry: one that is not registered is skipped and the
report says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..comparisons import Comparison, register_comparison

DEFAULT_FAMILIES = ("made", "pixelcnn", "flow", "vae", "gan", "autoencoder")
LIKELIHOOD_KIND = {"made": "exact", "pixelcnn": "exact", "flow": "bound", "vae": "estimate"}
ROLE = {
    "made": "autoregressive",
    "pixelcnn": "autoregressive",
    "flow": "flow",
    "vae": "latent variable (bound)",
    "gan": "implicit",
    "autoencoder": "autoencoder",
}

# Training budgets (epochs over the training split, or GAN generator steps) per family.
BUDGETS = {
    "full": {
        "made": {"epochs": 100},
        "pixelcnn": {"epochs": 40},
        "flow": {"epochs": 60},
        "vae": {"epochs": 150},
        "gan": {},  # the family's own budget for the data set (generator steps)
        "autoencoder": {"epochs": 100},
    },
    "quick": {
        "made": {"epochs": 15},
        "pixelcnn": {"epochs": 5},
        "flow": {"epochs": 8},
        "vae": {"epochs": 20},
        "gan": {"steps": 300},
        "autoencoder": {"epochs": 15},
    },
    "smoke": {
        "made": {"steps": 3},
        "pixelcnn": {"steps": 2},
        "flow": {"steps": 2},
        "vae": {"steps": 3},
        "gan": {"steps": 3},
        "autoencoder": {"steps": 3},
    },
}
# Per-family options that differ from the family's own command-line defaults.
OPTIONS: dict[str, dict] = {
    "flow": {"pixels": "data"},  # model the binarized pixels (2 levels) like everyone else
    "autoencoder": {"kind": "denoising"},
}
# Settings run_fit takes as arguments; a family may override their defaults in add_arguments.
_RUN_SETTINGS = ("batch_size", "lr", "optimizer", "lr_schedule", "warmup_steps")
_NOT_OPTIONS = {
    "epochs",
    "steps",
    "binarize",
    "seed",
    "data",
    "out",
    "k",
    "estimator",
    "num_particles",
    "resume",
}


def family_defaults(family: Any) -> tuple[dict, dict]:
    """Return ``(options, settings)``: a family's command-line defaults, as ``pyro-gen fit`` would use them.

    ``options`` go to the family's ``build``/``train``; ``settings`` (batch size, learning rate,
    ...) are the ones a family changed with ``parser.set_defaults`` (e.g. the GAN's batch
    size), plus ``binarize`` when the family prefers other pixels than the CLI's default.
    """
    parser = argparse.ArgumentParser(add_help=False)
    family.add_arguments(parser)
    values = vars(parser.parse_args([]))
    settings = {k: values.pop(k) for k in _RUN_SETTINGS if k in values}
    if "binarize" in values:
        settings["binarize"] = values["binarize"]
    options = {k: v for k, v in values.items() if k not in _NOT_OPTIONS}
    return options, settings


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="digits", help="digits | mnist:PATH (image data with labels)")
    p.add_argument("--out", default=None, help="report folder (default reports/families-<data>)")
    p.add_argument("--families", default=",".join(DEFAULT_FAMILIES), help="comma-separated family names")
    p.add_argument("--budget", default="full", choices=sorted(BUDGETS), help="training budget per family")
    p.add_argument("--k", type=int, default=5000, help="importance samples for the VAE's log-likelihood")
    p.add_argument(
        "--num-samples", type=int, default=1000, help="samples per family for the Frechet distance"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default=None, help="where families train: cpu | cuda | cuda:N | auto")
    p.add_argument(
        "--reuse", action="store_true", help="keep run folders already trained with these settings"
    )


@torch.no_grad()
def draw_samples(model: Any, family: str, num: int, seed: int) -> torch.Tensor:
    """Return ``(num, D)`` samples of a trained model as observations (binary pixels where it has them).

    A VAE is sampled through its likelihood (``mean=False``), so its samples are binary like the
    autoregressive models' and the data's.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if family == "vae":
            return model.sample(num, mean=False).float()
        return model.sample(num).float().reshape(num, -1)


def compare_families(
    data_spec: str = "digits",
    out: str | Path | None = None,
    *,
    families: tuple[str, ...] | list[str] = DEFAULT_FAMILIES,
    budget: str = "full",
    k: int = 5000,
    num_samples: int = 1000,
    seed: int = 0,
    progress: bool = True,
    reuse: bool = False,
    device: str | None = None,
) -> dict[str, Any]:
    """Train each family on ``data_spec`` and write the one-table report to ``out``.

    ``device`` (``cpu``, ``cuda``, ``auto``) is where each family trains (``run_fit``'s
    ``device``); scoring (samples, Frechet distance, probes) runs on the CPU.

    With ``reuse=True`` a family whose run folder in ``out`` was trained with identical
    settings is not trained again (its metrics and timings are read back).

    Returns ``{"rows": [...], "skipped": {...}, "floor": {...}, "files": [...]}``; each row has
    ``family``, ``test_bits_per_dim`` (or None) with ``likelihood_kind``, ``frechet_distance``
    (squared classifier-feature units), ``probe_accuracy`` (fraction), ``train_seconds`` and
    ``run_dir``. Writes ``families.json``, ``families.md``, ``samples.png`` and ``metrics.png``.
    """
    from ..data import load_data
    from ..inference.metrics import feature_classifier_for, frechet_distance
    from ..inference.probe import probe_split
    from ..registry import families as registered
    from ..report import write_json
    from ..report.families import plot_family_metrics, sample_grids_side_by_side
    from ..runs import load_run, run_fit

    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {sorted(BUDGETS)}, got {budget!r}")
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    out = Path(out or f"reports/families-{data_spec.split(':')[0]}")
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(data_spec, binarize="dynamic", seed=seed)
    if not data.is_image or data.train_labels is None:
        raise ValueError(
            f"compare families needs labelled image data (digits, mnist:PATH), got {data_spec!r}"
        )
    known = registered()
    skipped = {f: "not registered" for f in families if f not in known}
    todo = [f for f in families if f in known]
    test_ref = data.test
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        train_bin = data.batch_transform(data.train) if data.batch_transform else data.train
    # The feature classifier sees binarized images on both sides, like every sample here.
    clf = feature_classifier_for(dataclasses.replace(data, train=train_bin), seed=seed)
    floor = {
        "frechet_distance_train_vs_test": frechet_distance(train_bin[:num_samples], test_ref, clf.features),
        "probe_accuracy_raw_pixels": probe_split(None, data, seed=seed)["accuracy"],
        "feature_classifier_accuracy": clf.accuracy_,
    }
    rows: list[dict[str, Any]] = []
    grids: dict[str, torch.Tensor] = {"data (binarized)": test_ref[:36]}
    for name in todo:
        run_dir = out / name
        spec = BUDGETS[budget].get(name, {"epochs": 10})
        fam_options, fam_settings = family_defaults(known[name])
        # A family that trains on grey levels by default (the GAN) keeps them; its samples are
        # then binarized by one Bernoulli draw per pixel, which is exactly how dynamic
        # binarization turns the grey data into the binary data the others model.
        grey = fam_settings.pop("binarize", "dynamic") in (None, "none")
        settings = {"batch_size": 128, "lr": 1e-3, **fam_settings}
        fit_args = dict(
            options={**fam_options, **OPTIONS.get(name, {})},
            seed=seed,
            epochs=spec.get("epochs"),
            steps=spec.get("steps"),
            k=k,
            binarize=None if grey else "dynamic",
            **settings,
        )
        t0 = time.perf_counter()
        try:
            metrics = _reusable(run_dir, name, data_spec, fit_args) if reuse else None
            if metrics is None:
                if progress:
                    print(f"[families] training {name} ({spec or 'family budget'})", file=sys.stderr)
                metrics = run_fit(name, data_spec, out=run_dir, progress=progress, device=device, **fit_args)
            model, _ = load_run(run_dir)
        except Exception as e:  # one family failing must not lose the others' results
            skipped[name] = f"failed: {type(e).__name__}: {e}"
            continue
        row: dict[str, Any] = {
            "family": name,
            "role": ROLE.get(name, name),
            "train_seconds": metrics.get("seconds"),
            "total_seconds": time.perf_counter() - t0,
            "steps": metrics.get("steps"),
            "run_dir": str(run_dir),
            "pixels": "grey levels (samples Bernoulli-binarized)" if grey else "binary pixels",
            "test_bits_per_dim": None,
            "likelihood_kind": None,
            "frechet_distance": None,
            "probe_accuracy": None,
        }
        bpd = metrics.get("test_bits_per_dim")
        if bpd is not None and math.isfinite(bpd) and name in LIKELIHOOD_KIND:
            row["test_bits_per_dim"] = bpd
            row["likelihood_kind"] = LIKELIHOOD_KIND[name]
            row["test_log_likelihood"] = metrics.get("test_log_likelihood")
        if hasattr(model, "sample"):
            samples = draw_samples(model, name, num_samples, seed + 1)
            if grey:
                with torch.random.fork_rng():
                    torch.manual_seed(seed + 2)
                    samples = torch.bernoulli(samples.clamp(0.0, 1.0))
            row["frechet_distance"] = frechet_distance(samples, test_ref, clf.features)
            grids[name] = samples[:36]
        if name in ("vae", "autoencoder") or hasattr(model, "features"):
            row["probe_accuracy"] = probe_split(model, data, seed=seed)["accuracy"]
        rows.append(row)
    files = [
        str(
            write_json(
                {
                    "data": data_spec,
                    "budget": budget,
                    "k": k,
                    "rows": rows,
                    "skipped": skipped,
                    "floor": floor,
                    "num_samples": num_samples,
                },
                out / "families.json",
            )
        )
    ]
    (out / "families.md").write_text(format_table(rows, skipped, floor, data_spec, budget, k))
    files.append(str(out / "families.md"))
    files.append(str(sample_grids_side_by_side(grids, data.shape, out / "samples.png")))
    if rows:
        files.append(str(plot_family_metrics(rows, out / "metrics.png")))
    return {"rows": rows, "skipped": skipped, "floor": floor, "files": files}


def _reusable(run_dir: Path, name: str, data_spec: str, fit_args: dict) -> dict | None:
    """Return the metrics of a finished run in ``run_dir`` trained with these settings, else None."""
    import json

    try:
        config = json.loads((run_dir / "config.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    want = {"family": name, "data": data_spec, **{k: v for k, v in fit_args.items()}}
    same = all(config.get(k) == v for k, v in want.items())
    return metrics if same and (run_dir / "checkpoint.pt").exists() else None


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def format_table(rows: list[dict], skipped: dict, floor: dict, data_spec: str, budget: str, k: int) -> str:
    """Return the report as Markdown: one row per family, then the references and skipped families."""
    lines = [
        f"# Families on {data_spec} (binarized; budget {budget})",
        "",
        "| family | kind | trained on | test NLL (bits/dim) | NLL is | Frechet distance | linear probe "
        "| train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['role']} | {r.get('pixels', 'binary pixels')} | "
            f"{_fmt(r['test_bits_per_dim'], '.4f')} | "
            f"{r['likelihood_kind'] or '-'} | {_fmt(r['frechet_distance'], '.2f')} | "
            f"{_fmt(r['probe_accuracy'], '.3f')} | {_fmt(r['train_seconds'], '.1f')} |"
        )
    lines += [
        "",
        f"References: Frechet distance of binarized training images to the test set "
        f"{floor['frechet_distance_train_vs_test']:.2f}; linear probe on raw pixels "
        f"{floor['probe_accuracy_raw_pixels']:.3f}; feature classifier test accuracy "
        f"{floor['feature_classifier_accuracy']:.3f}.",
        f"NLL: exact = autoregressive likelihood; bound = dequantized flow (lower bound on the "
        f"discrete likelihood); estimate = importance sampling with k={k} (VAE).",
    ]
    if skipped:
        lines.append("Not in the table: " + "; ".join(f"{f} ({why})" for f, why in skipped.items()) + ".")
    return "\n".join(lines) + "\n"


def _run(args: argparse.Namespace) -> int:
    fams = [f.strip() for f in args.families.split(",") if f.strip()]
    if not fams:
        raise ValueError("--families is empty")
    res = compare_families(
        args.data,
        args.out,
        families=fams,
        budget=args.budget,
        k=args.k,
        num_samples=args.num_samples,
        seed=args.seed,
        progress=not args.no_progress,
        reuse=args.reuse,
        device=args.device,
    )
    out = Path(res["files"][0]).parent
    print((out / "families.md").read_text())
    print(f"report: {out}")
    return 0


register_comparison(
    Comparison(
        name="families",
        summary="every family (autoregressive, flow, VAE, GAN, autoencoder) on one table",
        add_arguments=_add_arguments,
        run=_run,
    )
)
