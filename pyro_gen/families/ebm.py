"""The ``ebm`` family: ``pyro-gen fit ebm --data moons --method pcd|dsm|ssm|nce``.

An energy-based model (:class:`~pyro_gen.models.ebm.EnergyModel`: an MLP energy for vectors,
a small conv net for images, on standardized coordinates with a weak Gaussian confinement)
trained by the engine with the model's own loss (trainer ``loss``): persistent contrastive
divergence with SGLD and a replay buffer, denoising or sliced score matching, or
noise-contrastive estimation against a Gaussian mixture or flow fitted to the training data
first. Image pixels are modelled as dequantized grey levels (``--binarize none`` by default).

Evaluation (:func:`evaluate_ebm`): on 2-D data the normalizer by quadrature, so the
held-out log-likelihood is exact in nats (``likelihood_kind`` ``exact-by-quadrature``), plus
mode metrics of SGLD samples on ring and grid; on images ``log Z`` by annealed importance
sampling from the base ``N(loc, (tau scale)^2)`` over independent runs, an estimated
(dequantized) log-likelihood labelled ``estimate``, and the Frechet distance of SGLD samples.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..config import parse_widths, require_positive, setting
from ..registry import ModelFamily

METHODS = ("pcd", "dsm", "ssm", "nce")
# the settings only one method reads: given with another method, they are refused
METHOD_SETTINGS = {
    "pcd": ("buffer_size", "reinit", "sgld_steps", "sgld_step", "sgld_noise", "sgld_step_min", "alpha"),
    "dsm": ("sigma", "sigma_max", "num_sigmas"),
    "ssm": ("projections",),
    "nce": ("noise", "noise_components", "noise_ratio", "noise_epochs"),
}


@dataclass
class EBMConfig:
    """Settings of an energy-based model, its training objective, sampler and evaluation."""

    method: str = setting(
        "pcd",
        "training objective: pcd (persistent contrastive divergence, SGLD + replay buffer), dsm "
        "(denoising score matching), ssm (sliced score matching), nce (noise-contrastive estimation)",
        choices=METHODS,
    )
    net: str = setting(
        "auto", "energy network: mlp, conv (images), auto (conv for images)", choices=("auto", "mlp", "conv")
    )
    hidden: str = setting("128,128", "MLP energy widths, comma-separated")
    channels: str = setting("32,64", "conv energy channels, comma-separated")
    tau: float = setting(2.0, "width of the Gaussian confinement |z|^2 / (2 tau^2), standardized units")
    buffer_size: int = setting(10000, "pcd: replay buffer size (chains kept between steps)")
    reinit: float = setting(0.05, "pcd: share of chains restarted from the base at each step")
    sgld_steps: int = setting(20, "pcd: SGLD steps per training step")
    sgld_step: float = setting(
        0.01, "pcd: SGLD step size eps (z <- z - eps/2 grad E + noise), standardized units^2"
    )
    sgld_noise: float | None = setting(
        None, "pcd: SGLD noise std (default sqrt(eps): Langevin; Du & Mordatch 2019 decouple it, e.g. 0.005)"
    )
    sgld_step_min: float | None = setting(
        None,
        "pcd: last SGLD step of each training step (geometric decay from --sgld-step; default: constant)",
    )
    alpha: float = setting(0.1, "pcd: weight of the energy-magnitude regularizer alpha (f(x+)^2 + f(x-)^2)")
    sigma: float = setting(0.1, "dsm: (smallest) noise std, standardized units: the model's density")
    sigma_max: float = setting(1.0, "dsm: largest noise std of the levels (geometric to --sigma)")
    num_sigmas: int = setting(
        1, "dsm: noise levels (Song & Ermon 2019: noise-conditional energy, annealed sampling); 1: one level"
    )
    projections: int = setting(1, "ssm: random projections per point")
    noise: str = setting(
        "auto",
        "nce: noise distribution fitted first: flow (spline flow), gmm (Gaussian mixture), "
        "auto (flow for vectors, gmm for images)",
        choices=("auto", "gmm", "flow"),
    )
    noise_components: int = setting(16, "nce: Gaussian-mixture noise components")
    noise_ratio: int = setting(4, "nce: noise points per data point (nu)")
    noise_epochs: float = setting(20.0, "nce with --noise flow: epochs the spline-flow noise trains")
    sample_steps: int = setting(500, "sampling: SGLD steps from the base")
    sample_step: float = setting(0.01, "sampling: first SGLD step size, standardized units^2")
    sample_step_min: float = setting(1e-4, "sampling: last SGLD step size (geometric decay)")
    quad_cell: float = setting(
        0.005, "2-D evaluation: quadrature cell size in the data's box, standardized units"
    )
    ais_steps: int = setting(1000, "images: AIS temperatures")
    ais_chains: int = setting(100, "images: AIS chains per run")
    ais_runs: int = setting(5, "images: independent AIS runs (their spread is reported)")
    ais_leapfrog: int = setting(5, "images: leapfrog steps of AIS's HMC transition")
    dequant_samples: int = setting(8, "images: dequantizations per test image")
    eval_samples: int = setting(2500, "SGLD samples drawn for sample metrics")

    def __post_init__(self) -> None:
        parse_widths(self.hidden, "hidden")
        parse_widths(self.channels, "channels")
        require_positive(
            self,
            "buffer_size",
            "sgld_steps",
            "projections",
            "num_sigmas",
            "noise_components",
            "noise_ratio",
            "sample_steps",
            "ais_steps",
            "ais_chains",
            "ais_runs",
            "ais_leapfrog",
            "dequant_samples",
            "eval_samples",
        )
        for name in (
            "tau",
            "sgld_step",
            "sigma",
            "sigma_max",
            "sample_step",
            "sample_step_min",
            "quad_cell",
            "noise_epochs",
        ):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"--{name.replace('_', '-')} must be a positive number, got {v!r}")
        if not 0.0 <= self.reinit <= 1.0:
            raise ValueError(f"--reinit must be in [0, 1], got {self.reinit}")
        if self.alpha < 0:
            raise ValueError(f"--alpha must be non-negative, got {self.alpha}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for method, names in METHOD_SETTINGS.items():
            for name in names:
                if method != self.method and getattr(self, name) != defaults[name]:
                    flag = "--" + name.replace("_", "-")
                    raise ValueError(
                        f"{flag} is a setting of --method {method}, not of --method {self.method}"
                    )
        if self.method == "dsm" and self.num_sigmas > 1 and not self.sigma_max > self.sigma:
            raise ValueError(
                f"--sigma-max ({self.sigma_max}) must exceed --sigma ({self.sigma}) with several levels"
            )
        if self.sgld_step_min is not None and not self.sgld_step_min > 0:
            raise ValueError(f"--sgld-step-min must be a positive number, got {self.sgld_step_min}")
        if self.sgld_noise is not None and not self.sgld_noise >= 0:
            raise ValueError(f"--sgld-noise must be non-negative, got {self.sgld_noise}")


def _levels(data) -> int | None:
    if not data.is_image:
        return None
    return 2 if data.binarized else int(data.num_levels or 256)


def _check(data, cfg: EBMConfig) -> str:
    """Return the energy network to build; ``ValueError`` for a setting the data cannot honour."""
    net = cfg.net if cfg.net != "auto" else ("conv" if data.is_image else "mlp")
    if net == "conv" and not data.is_image:
        raise ValueError(
            f"--net conv needs image data (digits, mnist:PATH), not {data.name!r}: use --net mlp"
        )
    if cfg.method == "nce" and cfg.noise == "flow" and data.is_image:
        raise ValueError("--method nce --noise flow is for vector data; on images use --noise gmm")
    return net


def _standardization(data, levels):
    import torch

    x = data.train.double()
    if levels is not None:  # dequantized grey levels: one scalar location and scale
        v = (torch.round(x * (levels - 1)) + 0.5) / levels
        return v.mean().float(), (v.std().clamp_min(1.0 / levels)).float()
    return x.mean(0).float(), x.std(0).clamp_min(1e-3).float()


def _noise_kind(data, cfg: EBMConfig) -> str:
    """Return the NCE noise to fit: ``--noise``, with ``auto`` a flow on vectors and a mixture on images."""
    if cfg.noise != "auto":
        return cfg.noise
    return "gmm" if data.is_image else "flow"


def _fit_noise(data, cfg: EBMConfig, levels, seed: int):
    """Return the NCE noise fitted to the training data: a Gaussian mixture or a spline flow."""
    import torch

    from ..models.ebm import MixtureNoise

    x = data.train.double()
    kind = _noise_kind(data, cfg)
    if kind == "gmm" and cfg.noise_components > x.shape[0]:
        raise ValueError(
            f"--noise-components {cfg.noise_components} exceeds the {x.shape[0]} training points"
        )
    if levels is not None:
        gen = torch.Generator().manual_seed(seed)
        x = (torch.round(x * (levels - 1)) + torch.rand(x.shape, generator=gen, dtype=torch.float64)) / levels
    if kind == "gmm":
        from sklearn.mixture import GaussianMixture

        cov = "full" if data.dim <= 64 else "diag"
        gm = GaussianMixture(cfg.noise_components, covariance_type=cov, reg_covar=1e-4, random_state=seed)
        gm.fit(x.numpy())
        covs = torch.as_tensor(gm.covariances_)
        if cov == "diag":
            covs = torch.diag_embed(covs)
        return MixtureNoise(
            torch.as_tensor(gm.weights_), torch.as_tensor(gm.means_), torch.linalg.cholesky(covs)
        )
    from ..inference.svi import fit
    from .flow import FlowConfig, build_flow

    flow = build_flow(data, FlowConfig(depth=4, hidden="64,64"), seed=seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        fit(
            flow,
            data.train,
            epochs=cfg.noise_epochs,
            batch_size=256,
            lr=5e-3,
            lr_schedule="cosine",
            progress=False,
            threads=1,
        )
    flow.eval()
    return flow


def _noise_placeholder(data, cfg: EBMConfig):
    from ..models.ebm import MixtureNoise
    from .flow import FlowConfig, build_flow

    if _noise_kind(data, cfg) == "gmm":
        return MixtureNoise.placeholder(cfg.noise_components, data.dim)
    return build_flow(data, FlowConfig(depth=4, hidden="64,64"))


def build_ebm(data, cfg: EBMConfig, seed: int = 0, fit_noise: bool = True):
    """Return an untrained :class:`~pyro_gen.models.ebm.EnergyModel` standardized on ``data.train``.

    With ``--method nce`` the noise (Gaussian mixture or spline flow) is fitted to the
    training data here, before the energy trains (``fit_noise=False``: an unfitted noise of
    the same shapes, for a checkpoint to fill). ``ValueError`` for settings the data cannot
    honour (``--net conv`` on vectors, ``--noise flow`` on images).
    """
    from ..models.ebm import ConvEnergy, EnergyModel, MLPEnergy, NoiseConditionalEnergy, noise_levels

    net_kind = _check(data, cfg)
    levels = _levels(data)
    conditional = cfg.method == "dsm" and cfg.num_sigmas > 1
    if net_kind == "conv":
        net = ConvEnergy(data.shape, parse_widths(cfg.channels, "channels"))
    else:
        net = MLPEnergy(data.dim + int(conditional), parse_widths(cfg.hidden))
    if conditional:  # log sigma is an input of the MLP; a conv energy is only divided by sigma
        sigmas = noise_levels(cfg.sigma_max, cfg.sigma, cfg.num_sigmas)
        net = NoiseConditionalEnergy(net, sigmas, condition=net_kind != "conv")
    loc, scale = _standardization(data, levels)
    noise = None
    if cfg.method == "nce":
        noise = _fit_noise(data, cfg, levels, seed) if fit_noise else _noise_placeholder(data, cfg)
    return EnergyModel(
        net,
        loc,
        scale,
        method=cfg.method,
        tau=cfg.tau,
        num_levels=levels,
        buffer_size=cfg.buffer_size,
        reinit=cfg.reinit,
        sgld_steps=cfg.sgld_steps,
        sgld_step=cfg.sgld_step,
        sgld_noise=cfg.sgld_noise,
        sgld_step_min=cfg.sgld_step_min,
        alpha=cfg.alpha,
        sigma=cfg.sigma,
        projections=cfg.projections,
        noise=noise,
        noise_ratio=cfg.noise_ratio,
        sample_steps=cfg.sample_steps,
        sample_step=cfg.sample_step,
        sample_step_min=cfg.sample_step_min,
        seed=seed,
        dim=data.dim,
    )


def load_ebm(run_dir, cfg: EBMConfig, data):
    """Return the trained energy model of a run folder (rebuilt from ``config.json`` and ``checkpoint.pt``).

    ``FileNotFoundError`` without a checkpoint, ``ValueError`` when it does not fit the settings.
    """
    from pathlib import Path

    from ..inference.checkpoint import load_checkpoint, restore_weights

    ckpt = Path(run_dir) / "checkpoint.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{run_dir} holds no {ckpt.name}: the run was never trained")
    model = build_ebm(data, cfg, fit_noise=False)
    restore_weights(model, load_checkpoint(ckpt), ckpt)
    model.eval()
    return model


def _seeded_samples(model, num: int, seed: int):
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return model.sample(num).detach().cpu()


def evaluate_ebm(model, data, cfg: EBMConfig, seed: int = 0) -> dict:
    """Return the EBM's held-out metrics (nats per point; see the module docstring).

    2-D: ``log_z`` by quadrature (with ``quadrature_error``, ``edge_mass``),
    ``train_log_likelihood``/``test_log_likelihood`` exact, ``likelihood_kind``
    ``exact-by-quadrature``, the scikit-learn mixture references, and on ring/grid the mode
    metrics of ``eval_samples`` SGLD samples. Images: ``log_z`` by AIS with ``log_z_std``
    (spread over ``ais_runs``), ``test_log_likelihood`` and ``test_bits_per_dim`` of the
    dequantized test images (``likelihood_kind`` ``estimate``), and with labels the Frechet
    distance of SGLD samples to the test images (classifier features) beside the training
    images' distance. NCE runs also report the learned ``nce_log_z`` against it.
    """
    import time

    import torch

    from ..evaluation.ebm import ais_log_normalizer, dequantized_log_density, ebm_quadrature

    model.eval()
    metrics: dict = dict(model.describe())
    started = time.perf_counter()
    if data.dim == 2 and not data.is_image:
        quad = ebm_quadrature(model, torch.cat([data.train, data.test]), cell=cfg.quad_cell)
        model.set_log_normalizer(quad["log_z"], "quadrature")
        metrics.update(
            {k if k in ("log_z", "quadrature_error") else f"quadrature_{k}": v for k, v in quad.items()}
        )
        metrics["likelihood_kind"] = "exact-by-quadrature"
        test_ll = float((dequantized_log_density(model, data.test) - quad["log_z"]).mean())
        train_ll = float((dequantized_log_density(model, data.train) - quad["log_z"]).mean())
        metrics.update(test_log_likelihood=test_ll, train_log_likelihood=train_ll)
        metrics["test_bits_per_dim"] = -test_ll / (data.dim * math.log(2))
        from .flow import reference_log_likelihoods

        metrics.update(reference_log_likelihoods(data.train, data.test, seed))
    else:
        ais = ais_log_normalizer(
            model,
            num_chains=cfg.ais_chains,
            num_runs=cfg.ais_runs,
            num_steps=cfg.ais_steps,
            leapfrog_steps=cfg.ais_leapfrog,
            seed=seed,
            progress=True,
        )
        model.set_log_normalizer(ais["log_z"], "ais")
        metrics.update({("ais_" + k if not k.startswith("log_z") else k): v for k, v in ais.items()})
        metrics["likelihood_kind"] = "estimate"
        ll = dequantized_log_density(model, data.test, cfg.dequant_samples, seed) - ais["log_z"]
        test_ll = float(ll.mean())
        metrics.update(
            test_log_likelihood=test_ll,
            test_log_likelihood_stderr=float(ll.std() / math.sqrt(len(ll))) if len(ll) > 1 else float("nan"),
            test_bits_per_dim=-test_ll / (data.dim * math.log(2)),
            dequantization_samples=cfg.dequant_samples,
        )
    metrics["log_z_seconds"] = time.perf_counter() - started
    if cfg.method == "nce":
        metrics["nce_log_z"] = float(model.nce_log_z.detach())
        metrics["nce_log_z_error"] = float(model.nce_log_z.detach()) - metrics["log_z"]
    started = time.perf_counter()
    samples = _seeded_samples(
        model, cfg.eval_samples if not data.is_image else min(cfg.eval_samples, 1000), seed + 1
    )
    metrics["eval_samples"] = int(samples.shape[0])
    info = data.info or {}
    if "means" in info and "std" in info:
        from ..evaluation.samples import mode_metrics_for_data

        metrics.update(mode_metrics_for_data(data, samples))
    if data.is_image and data.train_labels is not None:
        import dataclasses

        from ..evaluation.samples import feature_classifier_for, frechet_distance

        train = data.train
        if data.batch_transform is not None:  # binarized like the test images, as compare families does
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                train = data.batch_transform(data.train)
        clf = feature_classifier_for(dataclasses.replace(data, train=train), seed=seed)
        n = samples.shape[0]
        metrics["frechet_distance"] = frechet_distance(samples, data.test, clf.features)
        metrics["frechet_distance_train_vs_test"] = frechet_distance(train[:n], data.test, clf.features)
    metrics["sample_seconds"] = time.perf_counter() - started
    return metrics


def ebm_budget(data) -> dict:
    """Return the family's budget: 40 epochs on vectors, 30 on images."""
    return {"epochs": 30.0 if data.is_image else 40.0}


def ebm_threads(data) -> int | None:
    """Return 1 torch thread (small networks, many small SGLD steps)."""
    return 1


EBM_FAMILY = ModelFamily(
    name="ebm",
    summary="Energy-based model: PCD (SGLD + replay buffer), score matching (DSM, SSM) or NCE; "
    "quadrature (2-D) or AIS log Z",
    build=build_ebm,
    config=EBMConfig,
    trainer="loss",
    default_estimator=lambda cfg: f"ebm:{cfg.method}",
    defaults={"batch_size": 256, "lr": 1e-3, "binarize": "none"},
    budget=ebm_budget,
    threads=ebm_threads,
    evaluate=evaluate_ebm,
    load=load_ebm,
    likelihood="estimate",
    role="energy-based",
    budgets={"smoke": {"steps": 3}, "quick": {"epochs": 10}, "full": {"epochs": 30}},
    compare_options={"binarize": "dynamic"},
)
