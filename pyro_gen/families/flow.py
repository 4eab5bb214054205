"""The ``flow`` family: ``pyro-gen fit flow --data moons --transform spline --depth 8``.

Trains :class:`~pyro_gen.models.flows.FlowDensity` by maximum likelihood with the same SVI
loop as every model (a model without latents: its ELBO is log p(x)). Image data are
modelled as grey levels (dequantized) unless ``--pixels data`` keeps what ``--binarize``
made. For 2-D data the run folder gets ``density.png`` (data | learned density | samples)
and the metrics carry the held-out log-likelihood of a full-covariance Gaussian and of a
50-component scikit-learn mixture fitted to the same training points.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from ..registry import ModelFamily

GMM_REFERENCE_COMPONENTS = 50
# The family's own budget when neither --epochs nor --steps is given (``--epochs`` defaults
# to this sentinel): passes over the training data, per kind of data set.
EPOCHS_SENTINEL = 0.0
DEFAULT_EPOCHS = {"vectors": 80.0, "images": 30.0}


def _flow_arguments(p: argparse.ArgumentParser) -> None:
    from ..models.flows import ALIASES, PERMUTATIONS, TRANSFORMS, ZUKO_FLOWS

    p.add_argument("--transform", default="spline", choices=list(TRANSFORMS) + sorted(ALIASES))
    p.add_argument("--depth", type=int, default=8, help="number of flow blocks")
    p.add_argument("--hidden", default="128,128", help="conditioner widths, comma-separated")
    p.add_argument("--bins", type=int, default=8, help="spline bins (spline coupling, zuko nsf)")
    p.add_argument("--bound", type=float, default=5.0, help="spline interval [-B, B] (standardized units)")
    p.add_argument("--order", default="quadratic", choices=["quadratic", "linear"], help="spline order")
    p.add_argument(
        "--spline-both-halves",
        action="store_true",
        help="spline coupling: also transform the conditioning half (identity-initialised spline)",
    )
    p.add_argument(
        "--identity-init",
        action="store_true",
        help="maf / affine coupling: zero the conditioners' output layers (blocks start as the identity)",
    )
    p.add_argument("--permutation", default="auto", choices=list(PERMUTATIONS))
    p.add_argument("--batch-norm", action="store_true", help="Pyro BatchNorm between blocks")
    p.add_argument("--backend", default="pyro", choices=["pyro", "zuko"])
    p.add_argument("--zuko-flow", default="nsf", choices=list(ZUKO_FLOWS), help="flow when --backend zuko")
    p.add_argument(
        "--pixels",
        default="grey",
        choices=["grey", "data"],
        help="images: model the grey levels (default) or the --binarize'd pixels",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="images: logit(alpha + (1 - 2 alpha) v)")
    p.add_argument(
        "--dequant-samples", type=int, default=16, help="images: dequantization samples per test point"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads while training (default: 1 for vector data, torch's default for images)",
    )
    # the family's training defaults: batches of 256, Adam 5e-3 with cosine decay, and
    # DEFAULT_EPOCHS unless --epochs/--steps is given
    p.set_defaults(epochs=EPOCHS_SENTINEL, batch_size=256, lr=5e-3, lr_schedule="cosine")


def flow_data(data, config: dict):
    """Return the split the flow trains on: grey levels reloaded when the CLI binarized an image set."""
    from ..data import load_data

    options = config.get("options", {})
    if data.is_image and data.binarized and options.get("pixels", "grey") == "grey":
        return load_data(config["data"], binarize=None, seed=config.get("seed", 0))
    return data


def _levels(data, options: dict) -> int | None:
    if not data.is_image:
        return None
    if data.binarized and options.get("pixels", "grey") == "grey":
        return 17 if data.name == "digits" else 256
    return int(data.num_levels or 256)


def _build_flow(data, options: dict):
    from ..models.flows import FlowDensity, make_zuko_flow

    hidden = [int(h) for h in str(options.get("hidden", "128,128")).split(",") if h]
    depth = int(options.get("depth", 8))
    bins = int(options.get("bins", 8))
    zuko_flow = None
    if options.get("backend", "pyro") == "zuko":
        zuko_flow = make_zuko_flow(options.get("zuko_flow", "nsf"), data.dim, depth, hidden, bins)
    flow = FlowDensity(
        data.dim,
        options.get("transform", "spline"),
        depth,
        hidden,
        count_bins=bins,
        bound=float(options.get("bound", 5.0)),
        order=options.get("order", "quadratic"),
        spline_both_halves=bool(options.get("spline_both_halves", False)),
        identity_init=bool(options.get("identity_init", False)),
        permutation=options.get("permutation", "auto"),
        batch_norm=bool(options.get("batch_norm", False)),
        num_levels=_levels(data, options),
        alpha=float(options.get("alpha", 0.05)),
        zuko_flow=zuko_flow,
        seed=int(options.get("seed", 0)),
    )
    return flow.init_from_data(data.train)


def _train_flow(model, data, config: dict, out: Path):
    from ..report.flows import plot_flow_density

    data = flow_data(data, config)
    model.init_from_data(data.train)
    n = data.train.shape[0]
    bs = min(int(config["batch_size"]), n)
    epochs, steps = config["epochs"], config["steps"]
    if steps is None and (epochs is None or epochs == EPOCHS_SENTINEL):
        epochs = DEFAULT_EPOCHS["images" if data.is_image else "vectors"]
    ckpt = Path(out) / "checkpoint.pt"
    if config.get("resume") and not ckpt.is_file():
        raise ValueError(f"--resume: {ckpt} does not exist")
    # Small conditioners (2-D, tabular) run fastest on one thread: torch's default of one
    # thread per core spends more on synchronizing 128-wide matmuls than it saves (measured
    # on the 2-core machine: about 20 ms per step on 1 thread, 5x slower on 2 under load).
    threads = config.get("options", {}).get("threads")
    threads = int(threads) if threads else (None if data.is_image else 1)
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        result = _fit_flow(model, data, config, out, epochs, steps, n, bs, ckpt)
    finally:
        torch.set_num_threads(saved_threads)
    if data.dim == 2:
        torch.manual_seed(0)
        samples = model.sample(2000)
        path = plot_flow_density(
            model.log_prob, data.test, samples, Path(out) / "density.png", title=model.transform_name
        )
        model.figures_ = [path.name]
    return result


def _fit_flow(model, data, config: dict, out: Path, epochs, steps, n: int, bs: int, ckpt: Path):
    from ..inference import fit

    return fit(
        model,
        data.train,
        estimator=config["estimator"],
        optimizer=config["optimizer"],
        lr=config["lr"],
        lr_schedule=config["lr_schedule"],
        warmup_steps=config["warmup_steps"],
        batch_size=bs,
        epochs=epochs,
        steps=steps,
        test_data=data.test,
        transform=None if not data.binarized else data.batch_transform,
        seed=config["seed"],
        checkpoint=ckpt,
        checkpoint_every=max(1, n // bs),
        resume=ckpt if config.get("resume") else None,
        progress=bool(config.get("progress", True)),
        device=config.get("device"),
    )


def reference_log_likelihoods(train: torch.Tensor, test: torch.Tensor, seed: int = 0) -> dict:
    """Return held-out log-likelihoods (nats per point) of scikit-learn Gaussian mixtures fitted to ``train``:
    ``reference_gaussian`` (one full-covariance component) and ``reference_gmm50`` (50 components)."""
    from sklearn.mixture import GaussianMixture

    out = {}
    for key, k in (
        ("reference_gaussian", 1),
        (f"reference_gmm{GMM_REFERENCE_COMPONENTS}", GMM_REFERENCE_COMPONENTS),
    ):
        gm = GaussianMixture(k, covariance_type="full", random_state=seed).fit(train.double().numpy())
        out[key] = float(gm.score(test.double().numpy()))
    return out


def _evaluate_flow(model, data, config: dict) -> dict:
    data = flow_data(data, config)
    s = int(config.get("options", {}).get("dequant_samples", 16)) if model.num_levels else 1
    model.eval()
    torch.manual_seed(config.get("seed", 0))
    train_ll = float(model.log_likelihood(data.train, 1).mean())
    test_ll = float(model.log_likelihood(data.test, s).mean())
    test_elbo = float(model.log_likelihood(data.test, 1).mean())
    metrics = {
        "train_elbo": train_ll,
        "test_elbo": test_elbo,
        "test_log_likelihood": test_ll,
        "test_bits_per_dim": -test_ll / (data.dim * math.log(2)),
        "dequantization_samples": s if model.num_levels else None,
        "num_levels": model.num_levels,
        "num_parameters": model.num_parameters(),
        "transform": model.transform_name,
        "flow_figures": getattr(model, "figures_", []),
    }
    if data.dim == 2:
        metrics.update(reference_log_likelihoods(data.train, data.test, config.get("seed", 0)))
    return metrics


def _load_flow(run_dir, config: dict):
    from ..data import load_data
    from ..inference import load_checkpoint

    data = flow_data(load_data(config["data"], binarize=config.get("binarize"), seed=config["seed"]), config)
    model = _build_flow(data, config.get("options", {}))
    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    model.load_state_dict(state["module_state"])
    model.eval()
    return model


FLOW_FAMILY = ModelFamily(
    name="flow",
    summary="Normalizing flow (Pyro transforms or zuko): exact log-likelihood, dequantized images",
    build=_build_flow,
    add_arguments=_flow_arguments,
    train=_train_flow,
    evaluate=_evaluate_flow,
    load=_load_flow,
    default_estimator="reparam",
)
