"""The ``autoencoder`` family: ``pyro-gen fit autoencoder --data digits --kind denoising``.

A deterministic autoencoder (plain, sparse, denoising or contractive) trained by the engine
with its own loss; evaluated by its held-out loss and by a linear probe (logistic
regression) on the encoder's codes, next to the same probe on raw pixels. It has no
likelihood and does not sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import parse_widths, require_positive, setting
from ..registry import ModelFamily

DEFAULT_WEIGHT = {"sparse": 1e-2, "contractive": 0.1}


@dataclass
class AutoencoderConfig:
    """Settings of a deterministic autoencoder."""

    kind: str = setting("plain", "regulariser", choices=("plain", "sparse", "denoising", "contractive"))
    code_dim: int = setting(32, "code (bottleneck) width")
    hidden: str = setting("256", "encoder widths, comma-separated (decoder mirrors)")
    activation: str = setting("relu", "hidden activation", choices=("relu", "tanh", "softplus", "elu"))
    code_activation: str = setting(
        "sigmoid", "code activation", choices=("identity", "relu", "sigmoid", "tanh")
    )
    loss: str = setting("bce", "reconstruction loss", choices=("bce", "mse"))
    weight: float | None = setting(None, "sparse/contractive penalty weight (default 0.01 / 0.1)")
    noise: str = setting("mask", "denoising corruption", choices=("mask", "gaussian"))
    noise_level: float = setting(0.3, "masking probability nu, or Gaussian std")

    def __post_init__(self) -> None:
        parse_widths(self.hidden, "hidden")
        require_positive(self, "code_dim")


def build_autoencoder(data, cfg: AutoencoderConfig):
    """Return an untrained :class:`~pyro_gen.models.autoencoders.Autoencoder` for ``data``."""
    from ..models.autoencoders import Autoencoder

    ae = Autoencoder(
        data.dim,
        code_dim=cfg.code_dim,
        hidden=parse_widths(cfg.hidden),
        activation=cfg.activation,
        code_activation=cfg.code_activation,
        loss=cfg.loss,
        kind=cfg.kind,
        weight=float(DEFAULT_WEIGHT.get(cfg.kind, 1e-3) if cfg.weight is None else cfg.weight),
        noise=cfg.noise,
        noise_level=cfg.noise_level,
    )
    ae.init_output_bias(data.train.mean(0))
    return ae


def evaluate_autoencoder(model, data, cfg: AutoencoderConfig, seed: int = 0) -> dict:
    """Return ``test_loss`` (per point), ``probe_accuracy`` on codes and ``probe_accuracy_raw_pixels``."""
    import torch

    from ..evaluation.probe import probe_split
    from ..inference.loss import mean_loss

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        test_loss = mean_loss(model, data.test)
    metrics = {"test_loss": test_loss, "kind": model.kind, "loss": model.loss_type}
    if data.train_labels is not None:
        probe = probe_split(model, data, seed=seed)
        raw = probe_split(None, data, seed=seed)
        metrics.update(
            probe_accuracy=probe["accuracy"],
            probe_train_accuracy=probe["train_accuracy"],
            probe_accuracy_raw_pixels=raw["accuracy"],
        )
    return metrics


AUTOENCODER_FAMILY = ModelFamily(
    name="autoencoder",
    summary="Deterministic autoencoder: plain, sparse, denoising, contractive; linear-probe evaluation",
    build=build_autoencoder,
    config=AutoencoderConfig,
    trainer="loss",
    default_estimator=lambda cfg: f"autoencoder:{cfg.kind}",
    evaluate=evaluate_autoencoder,
    likelihood=None,
    role="autoencoder",
    budgets={"smoke": {"steps": 3}, "quick": {"epochs": 15}, "full": {"epochs": 100}},
    compare_options={"kind": "denoising"},
)
