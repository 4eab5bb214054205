"""The ``flow`` family: ``pyro-gen fit flow --data moons --transform spline --depth 8``.

Trains :class:`~pyro_gen.models.flows.FlowDensity` by maximum likelihood with the SVI
objective (a model without latents: its ELBO is log p(x), so no estimator or particle
settings apply and none are offered). Image data are modelled as grey levels (dequantized)
unless ``--pixels data`` keeps what ``--binarize`` made. For 2-D data the metrics carry the
held-out log-likelihood of a full-covariance Gaussian and of a 50-component scikit-learn
mixture fitted to the same training points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import parse_widths, require_positive, setting
from ..registry import ModelFamily

GMM_REFERENCE_COMPONENTS = 50
BN_STATS = ("full", "running")
BN_STATS_BATCH = 1024
DEFAULT_EPOCHS = {"vectors": 80.0, "images": 30.0}


@dataclass
class FlowConfig:
    """Settings of a normalizing flow (Pyro transforms or zuko)."""

    transform: str = setting(
        "spline",
        "flow block: spline_coupling (spline), affine_coupling, masked_coupling (RealNVP as in MAF's "
        "paper: alternating masks, tanh scale and relu shift networks), maf, spline_autoregressive, naf, ...",
    )
    depth: int = setting(8, "number of flow blocks")
    hidden: str = setting("128,128", "conditioner widths, comma-separated")
    bins: int = setting(8, "spline bins (spline coupling, zuko nsf)")
    bound: float = setting(5.0, "spline interval [-B, B] (standardized units)")
    order: str = setting("quadratic", "spline order", choices=("quadratic", "linear"))
    spline_both_halves: bool = setting(
        False, "spline coupling: also transform the conditioning half (identity-initialised spline)"
    )
    identity_init: bool = setting(
        False, "maf / affine coupling: zero the conditioners' output layers (blocks start as the identity)"
    )
    permutation: str = setting(
        "auto", "permutation between blocks", choices=("auto", "reverse", "random", "none")
    )
    made_order: str = setting(
        "random",
        "maf: input order of each MADE: random (Pyro's default) or sequential (pixel 0 first; with "
        "--permutation reverse the orders alternate, as in Papamakarios et al. 2017)",
        choices=("random", "sequential"),
    )
    batch_norm: bool = setting(False, "Pyro BatchNorm between blocks")
    bn_last: bool = setting(
        False,
        "with --batch-norm, also a batch-norm layer after the last block (data to base), so that "
        "every block is followed by one, as MAF and RealNVP in Papamakarios et al. 2017",
    )
    bn_stats: str = setting(
        "full",
        "with --batch-norm, the statistics eval mode uses: full (mean/variance of each layer's input "
        "over the whole training set, set after training, as MAF does) or running (Pyro's moving averages)",
        choices=BN_STATS,
    )
    backend: str = setting("pyro", "transform library", choices=("pyro", "zuko"))
    zuko_flow: str = setting(
        "nsf", "flow when --backend zuko", choices=("nsf", "maf", "naf", "realnvp", "nice", "ncsf", "sospf")
    )
    pixels: str = setting(
        "grey",
        "images: model the grey levels (grey) or the --binarize'd pixels (data)",
        choices=("grey", "data"),
    )
    alpha: float = setting(
        0.05,
        "images: the logit map logit(alpha + (1 - 2 alpha) v) of dequantized pixels v (lambda in "
        "Papamakarios et al. 2017: 1e-6 for MNIST)",
    )
    dequant_samples: int = setting(16, "images: dequantization samples per test point")

    def __post_init__(self) -> None:
        parse_widths(self.hidden, "hidden")
        require_positive(self, "depth", "bins", "dequant_samples")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"--alpha must be in (0, 0.5), got {self.alpha}")
        if self.bn_last and not self.batch_norm:
            raise ValueError("--bn-last goes with --batch-norm")


def prepare_flow_data(data, cfg: FlowConfig, spec: str, seed: int):
    """Return the split the flow trains on: grey levels reloaded when the CLI binarized an image set."""
    from ..data import load_data

    if data.is_image and data.binarized and cfg.pixels == "grey":
        return load_data(spec, binarize=None, seed=seed)
    return data


def _levels(data, cfg: FlowConfig) -> int | None:
    return int(data.num_levels or 256) if data.is_image else None


def build_flow(data, cfg: FlowConfig, seed: int = 0):
    """Return an untrained :class:`~pyro_gen.models.flows.FlowDensity` standardized on ``data.train``."""
    from ..models.flows import FlowDensity, make_zuko_flow

    hidden = parse_widths(cfg.hidden)
    zuko_flow = None
    if cfg.backend == "zuko":
        zuko_flow = make_zuko_flow(cfg.zuko_flow, data.dim, cfg.depth, hidden, cfg.bins)
    flow = FlowDensity(
        data.dim,
        cfg.transform,
        cfg.depth,
        hidden,
        count_bins=cfg.bins,
        bound=cfg.bound,
        order=cfg.order,
        spline_both_halves=cfg.spline_both_halves,
        identity_init=cfg.identity_init,
        permutation=cfg.permutation,
        batch_norm=cfg.batch_norm,
        bn_last=cfg.bn_last,
        made_order=cfg.made_order,
        num_levels=_levels(data, cfg),
        alpha=cfg.alpha,
        zuko_flow=zuko_flow,
        seed=seed,
    )
    return flow.init_from_data(data.train)


def flow_budget(data) -> dict:
    """Return the family's budget: 80 epochs on vectors, 30 on images."""
    return {"epochs": DEFAULT_EPOCHS["images" if data.is_image else "vectors"]}


def flow_threads(data) -> int | None:
    """Return 1 thread for vector data (small conditioners), torch's default for images.

    Measured on the 2-core machine: about 20 ms per step on 1 thread, 5x slower on 2 under load.
    """
    return None if data.is_image else 1


def reference_log_likelihoods(train, test, seed: int = 0) -> dict:
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


def _held_out(model, data, s: int, seed: int) -> tuple[float, float, float]:
    """Return (train ELBO, test log-likelihood over ``s`` dequantizations, test ELBO), nats per point."""
    import torch

    model.eval()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        train_ll = float(model.log_likelihood(data.train, 1).mean())
        test_ll = float(model.log_likelihood(data.test, s).mean())
        test_elbo = float(model.log_likelihood(data.test, 1).mean())
    return train_ll, test_ll, test_elbo


def finish_batch_norm(model, data, cfg: FlowConfig, seed: int = 0) -> dict:
    """Set a batch-norm flow's statistics as ``--bn-stats`` says; return what to record in the metrics.

    With ``full`` (the default) every batch-norm layer gets the mean and variance of its input
    over the whole training split (:func:`~pyro_gen.models.flows.set_batch_norm_statistics`,
    dequantization noise from the flow's own seed, so every evaluation of a run sees the same
    statistics whatever its ``seed``), unless they were set since the flow last trained.
    Returns ``bn_stats`` (``"full"``, ``"running"``, or None without batch norm),
    ``bn_stats_seconds`` (wall seconds of the pass) and the pass's summary
    (``bn_layers``, ``bn_points``, ``bn_min_variance``, ``bn_max_log_variance_ratio``).
    """
    import time

    from ..models.flows import batch_norm_layers, set_batch_norm_statistics

    if not hasattr(model, "bn_stats") or not batch_norm_layers(model):
        return {"bn_stats": None}
    if cfg.bn_stats == "running" or model.bn_stats == "full":
        return {"bn_stats": model.bn_stats}
    started = time.perf_counter()
    stats_seed = int(model.config.get("seed", 0))
    summary = set_batch_norm_statistics(model, data.train, batch_size=BN_STATS_BATCH, seed=stats_seed)
    return {"bn_stats": "full", "bn_stats_seconds": time.perf_counter() - started, **summary}


def logit_space_metrics(model, data, seed: int = 0) -> dict:
    """Return an image flow's test log-likelihood in logit space (Papamakarios et al. 2017, Table 2).

    ``test_log_likelihood_logit``: the mean over the test images of ``log p(y)`` (nats per
    image), ``y = logit(alpha + (1 - 2 alpha) v)`` of the pixels dequantized once (noise from
    ``seed``), :meth:`~pyro_gen.models.flows.FlowDensity.logit_log_likelihood`;
    ``test_log_likelihood_logit_stderr`` its standard error (the standard deviation over images
    / sqrt(N)); ``logit_alpha`` the alpha (lambda) used. A progress bar on stderr.
    """
    import torch

    model.eval()
    ll = model.logit_log_likelihood(data.test, seed=seed, progress=True).double()
    n = int(ll.shape[0])
    stderr = float(ll.std() / math.sqrt(n)) if n > 1 else float("nan")
    finite = bool(torch.isfinite(ll).all())
    return {
        "test_log_likelihood_logit": float(ll.mean()),
        "test_log_likelihood_logit_stderr": stderr if finite else float("nan"),
        "logit_alpha": model.alpha,
    }


def evaluate_flow(model, data, cfg: FlowConfig, seed: int = 0) -> dict:
    """Return exact train/test log-likelihoods (nats per point; images: dequantized, importance-sampled).

    Image flows also get the logit-space test log-likelihood the MAF paper reports
    (:func:`logit_space_metrics`: ``test_log_likelihood_logit`` and its standard error).

    A batch-norm flow is first given its evaluation statistics (:func:`finish_batch_norm`);
    with ``--bn-stats full`` the metrics also hold the same held-out numbers under the
    running averages training left (``test_log_likelihood_running_stats``,
    ``test_bits_per_dim_running_stats``, ``train_elbo_running_stats``), when the flow still
    has them.
    """
    s = cfg.dequant_samples if model.num_levels else 1
    running = {}
    bn = hasattr(model, "bn_stats") and cfg.batch_norm and cfg.bn_stats == "full"
    if bn and model.bn_stats == "running":
        train_r, test_r, _ = _held_out(model, data, s, seed)
        running = {
            "train_elbo_running_stats": train_r,
            "test_log_likelihood_running_stats": test_r,
            "test_bits_per_dim_running_stats": -test_r / (data.dim * math.log(2)),
        }
    metrics = finish_batch_norm(model, data, cfg, seed)
    train_ll, test_ll, test_elbo = _held_out(model, data, s, seed)
    if model.num_levels is not None:
        metrics.update(logit_space_metrics(model, data, seed))
    metrics.update(
        {
            "train_elbo": train_ll,
            "test_elbo": test_elbo,
            "test_log_likelihood": test_ll,
            "test_bits_per_dim": -test_ll / (data.dim * math.log(2)),
            "likelihood_kind": "exact",
            "dequantization_samples": s if model.num_levels else None,
            "num_levels": model.num_levels,
            "num_parameters": model.num_parameters(),
            "transform": model.transform_name,
            **running,
        }
    )
    if data.dim == 2:
        metrics.update(reference_log_likelihoods(data.train, data.test, seed))
    return metrics


def load_flow(run_dir, cfg: FlowConfig, data):
    """Return the trained flow of a run folder, ready for evaluation and sampling.

    The flow is rebuilt from ``config.json`` and its ``checkpoint.pt`` (weights, buffers and
    Pyro's param store, as every family is loaded); a batch-norm flow with ``--bn-stats
    full`` then gets its full training-set statistics again (:func:`finish_batch_norm`, one
    pass over the run's training split, which is loaded for it), because the checkpoint holds
    the running averages training left. ``FileNotFoundError`` without a checkpoint,
    ``ValueError`` when the checkpoint does not fit the configuration.
    """
    import json
    from pathlib import Path

    import torch

    from ..data import load_data
    from ..inference.checkpoint import load_checkpoint, restore_weights

    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{run_dir} holds no {ckpt.name}: the run was never trained")
    model = build_flow(data, cfg)
    restore_weights(model, load_checkpoint(ckpt), ckpt)
    model.eval()
    if cfg.batch_norm and cfg.bn_stats == "full" and model.zuko_flow is None:
        config = json.loads((run_dir / "config.json").read_text())
        spec, seed = config["run"]["data"], int(config["train"].get("seed") or 0)
        binarize = config["run"].get("binarize")
        train = load_data(spec, binarize=None if binarize == "none" else binarize, seed=seed)
        train = prepare_flow_data(train, cfg, spec, seed)
        with torch.no_grad():
            finish_batch_norm(model, train, cfg, seed)
    return model


FLOW_FAMILY = ModelFamily(
    name="flow",
    summary="Normalizing flow (Pyro transforms or zuko): exact log-likelihood, dequantized images",
    build=build_flow,
    config=FlowConfig,
    trainer="svi",
    trainer_settings=(),
    defaults={"batch_size": 256, "lr": 5e-3, "lr_schedule": "cosine"},
    budget=flow_budget,
    threads=flow_threads,
    prepare=prepare_flow_data,
    evaluate=evaluate_flow,
    load=load_flow,
    likelihood="bound",
    role="flow",
    budgets={"smoke": {"steps": 2}, "quick": {"epochs": 8}, "full": {"epochs": 60}},
    compare_options={"pixels": "data"},
)
