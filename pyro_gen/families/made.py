"""The autoregressive families: ``pyro-gen fit made`` and ``pyro-gen fit pixelcnn`` (exact log-likelihood).

Both are trained by maximum likelihood with the SVI objective and an empty guide (no
estimator or particle settings apply, and none are offered). MADE on binarized data (the
CLI default) gets Bernoulli conditionals, with ``--binarize none`` Gaussian ones (a density
over the grey levels, not a probability of the discrete data). PixelCNN models binary images.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import parse_widths, require_positive, setting
from ..registry import ModelFamily


@dataclass
class MADEConfig:
    """Settings of MADE (masked autoencoder for distribution estimation)."""

    hidden: str = setting("512,512", "masked hidden widths, comma-separated")
    likelihood: str = setting(
        "auto",
        "conditionals (auto: bernoulli for binarized data, else gaussian)",
        choices=("auto", "bernoulli", "gaussian"),
    )
    order: str = setting("natural", "autoregressive order", choices=("natural", "random"))
    activation: str = setting("relu", "hidden activation", choices=("relu", "tanh", "softplus", "elu"))
    degrees: str = setting(
        "cycle",
        "hidden units' degrees (cycle: 1..D-1 in turn; random: drawn uniformly as in Germain et al. "
        "2015, with --mask-seed)",
        choices=("cycle", "random"),
    )
    mask_seed: int = setting(0, "seed of the random degrees and of the random order (fixed: a run reloads)")
    direct: bool = setting(False, "add a masked direct connection from the inputs to the outputs")

    def __post_init__(self) -> None:
        parse_widths(self.hidden, "hidden")


def build_made(data, cfg: MADEConfig):
    """Return an untrained :class:`~pyro_gen.models.autoregressive.MADE` for ``data``."""
    import torch

    from ..models.autoregressive import MADE

    likelihood = cfg.likelihood
    if likelihood == "auto":
        likelihood = "bernoulli" if data.binarized else "gaussian"
    order = None
    if cfg.order == "random":
        # fixed seed: a run folder rebuilds the same order
        order = torch.randperm(data.dim, generator=torch.Generator().manual_seed(cfg.mask_seed))
    made = MADE(
        data.dim,
        hidden=parse_widths(cfg.hidden),
        likelihood=likelihood,
        order=order,
        activation=cfg.activation,
        degrees=cfg.degrees,
        mask_seed=cfg.mask_seed,
        direct=cfg.direct,
    )
    made.init_output_bias(data.train.mean(0))
    return made


def evaluate_autoregressive(model, data, cfg, seed: int = 0) -> dict:
    """Return exact ``train_elbo``/``test_elbo``/``test_log_likelihood`` (nats per point) and bits/dim.

    ``train_elbo`` is computed on the first 10,000 training rows at most.
    """
    import torch

    from ..models.autoregressive import exact_log_likelihood

    train = data.train[:10000]  # the train metric on at most 10,000 rows (MNIST: 60,000 x 784 passes)
    if data.batch_transform is not None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            train = data.batch_transform(train)
    tr = exact_log_likelihood(model, train)
    te = exact_log_likelihood(model, data.test)
    return {
        "train_elbo": tr["log_likelihood"],
        "test_elbo": te["log_likelihood"],
        "test_log_likelihood": te["log_likelihood"],
        "test_bits_per_dim": te["bits_per_dim"],
        "likelihood_kind": "exact",
    }


MADE_FAMILY = ModelFamily(
    name="made",
    summary="MADE: masked autoregressive MLP, exact log-likelihood (Bernoulli or Gaussian conditionals)",
    build=build_made,
    config=MADEConfig,
    trainer="svi",
    trainer_settings=(),
    evaluate=evaluate_autoregressive,
    likelihood="exact",
    role="autoregressive",
    budgets={"smoke": {"steps": 3}, "quick": {"epochs": 15}, "full": {"epochs": 100}},
)


@dataclass
class PixelCNNConfig:
    """Settings of PixelCNN (masked convolutions over binary images)."""

    channels: int = setting(32, "feature maps of the residual stream (the paper's 2h)")
    layers: int = setting(4, "residual layers (each with one type-B 3x3 masked convolution)")
    first_kernel: int | None = setting(None, "type-A kernel (default 5 for 8x8, else 7)")
    block: str = setting(
        "conv",
        "residual layer (conv: relu then a masked 3x3 added to the stream; bottleneck: the paper's "
        "block, relu-1x1-relu-masked 3x3-relu-1x1)",
        choices=("conv", "bottleneck"),
    )
    hidden: int | None = setting(
        None, "feature maps inside a bottleneck block (default channels/2, the paper's h)"
    )

    def __post_init__(self) -> None:
        require_positive(self, "channels", "layers", "first_kernel", "hidden")
        if self.hidden is not None and self.block != "bottleneck":
            raise ValueError("--hidden goes with --block bottleneck")


def build_pixelcnn(data, cfg: PixelCNNConfig):
    """Return an untrained :class:`~pyro_gen.models.autoregressive.PixelCNN` for an image ``data`` set."""
    from ..models.autoregressive import PixelCNN

    if not data.is_image:
        raise ValueError(f"pixelcnn needs image data (8x8 digits or 28x28 MNIST), got shape {data.shape}")
    if not data.binarized:
        raise ValueError("pixelcnn models binary pixels: use --binarize dynamic or static")
    net = PixelCNN(
        data.shape,
        channels=cfg.channels,
        num_layers=cfg.layers,
        first_kernel=cfg.first_kernel,
        block=cfg.block,
        hidden=cfg.hidden,
    )
    net.init_output_bias(data.train.mean(0))
    return net


PIXELCNN_FAMILY = ModelFamily(
    name="pixelcnn",
    summary="PixelCNN: masked convolutions over binary images, exact log-likelihood",
    build=build_pixelcnn,
    config=PixelCNNConfig,
    trainer="svi",
    trainer_settings=(),
    evaluate=evaluate_autoregressive,
    likelihood="exact",
    role="autoregressive",
    budgets={"smoke": {"steps": 2}, "quick": {"epochs": 5}, "full": {"epochs": 40}},
)
