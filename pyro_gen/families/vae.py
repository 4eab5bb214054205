"""The VAE families: ``pyro-gen fit vae`` (Gaussian latents) and ``pyro-gen fit dvae`` (binary latents)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import parse_widths, require_positive, setting
from ..registry import ModelFamily

ACTIVATIONS = ("relu", "tanh", "softplus", "elu")
ARCHS = ("mlp", "conv")
PRIOR_KINDS = ("normal", "mog", "vamp", "flow")
PRIOR_FLOWS = ("maf", "spline_coupling", "affine_coupling", "spline_autoregressive")
VAE_BUDGETS = {"smoke": {"steps": 3}, "quick": {"epochs": 20}, "full": {"epochs": 150}}


@dataclass
class VAEConfig:
    """Settings of the Gaussian-latent VAE (MLP or convolutional encoder and mirrored decoder)."""

    latent_dim: int = setting(16, "latent dimensions (2 draws the manifold)")
    hidden: str = setting("256", "encoder widths, comma-separated (decoder mirrors)")
    activation: str = setting("relu", "hidden activation", choices=ACTIVATIONS)
    likelihood: str = setting("bernoulli", "observation model", choices=("bernoulli", "gaussian"))
    gaussian_scale: float = setting(0.1, "std of the Gaussian likelihood")
    learn_scale: bool = setting(False, "learn the Gaussian likelihood's std")
    lower_latents: str = setting(
        "",
        "stochastic layers under the top one, data side first: their widths, comma-separated "
        "(e.g. 100 with --latent-dim 50 --hidden 200,200: Burda et al.'s two-layer "
        "784-200-200-100-100-100-50)",
    )
    between_hidden: str = setting(
        "100,100", "with --lower-latents: widths of the networks between two stochastic layers"
    )
    arch: str = setting(
        "mlp",
        "data-side networks: mlp, or conv (images only: stride-2 convolutions with --conv-channels, "
        "then --hidden fully connected widths; combines with --lower-latents, whose networks stay MLPs)",
        choices=ARCHS,
    )
    conv_channels: str = setting(
        "32,64", "with --arch conv: feature maps of each stride-2 convolution, comma-separated"
    )
    prior: str = setting(
        "normal",
        "p(z): normal N(0, I); mog (learned mixture of Gaussians); vamp (VampPrior, Tomczak and "
        "Welling 2018); flow (MAF on N(0, I)). Non-normal priors have no closed-form KL: "
        "analytic-kl falls back to the Monte Carlo term for z",
        choices=PRIOR_KINDS,
    )
    prior_components: int = setting(10, "with --prior mog or vamp: mixture components (pseudo-inputs)")
    vamp_init: str = setting(
        "data",
        "with --prior vamp: pseudo-inputs start at random training points (data) or N(0.05, 0.01^2) (random)",
        choices=("data", "random"),
    )
    prior_flow: str = setting("maf", "with --prior flow: the flow's blocks", choices=PRIOR_FLOWS)
    prior_flow_depth: int = setting(4, "with --prior flow: number of flow blocks")

    def __post_init__(self) -> None:
        parse_widths(self.hidden, "hidden")
        parse_widths(self.lower_latents, "lower_latents")
        parse_widths(self.between_hidden, "between_hidden")
        parse_widths(self.conv_channels, "conv_channels")
        require_positive(self, "latent_dim", "prior_components", "prior_flow_depth")
        if self.prior == "vamp" and parse_widths(self.lower_latents, "lower_latents"):
            raise ValueError("--prior vamp needs one stochastic layer: drop --lower-latents or use mog/flow")
        if not self.gaussian_scale > 0:
            raise ValueError(f"--gaussian-scale must be positive, got {self.gaussian_scale}")


def build_vae(data, cfg: VAEConfig, seed: int = 0):
    """Return an untrained :class:`~pyro_gen.models.VAE` for ``data``, output bias at the data mean.

    ``--arch conv`` needs image data (``data.shape`` of two axes): ``ValueError`` otherwise.
    """
    from ..models.vae import VAE

    if cfg.arch == "conv" and len(data.shape) != 2:
        raise ValueError(
            f"--arch conv needs image data (points of shape (H, W), e.g. digits or mnist); "
            f"{data.name} has points of shape {tuple(data.shape)}"
        )
    vae = VAE(
        data.dim,
        latent_dim=cfg.latent_dim,
        hidden=parse_widths(cfg.hidden),
        activation=cfg.activation,
        likelihood=cfg.likelihood,
        gaussian_scale=cfg.gaussian_scale,
        learn_scale=cfg.learn_scale,
        lower_latents=parse_widths(cfg.lower_latents, "lower_latents"),
        between_hidden=parse_widths(cfg.between_hidden, "between_hidden"),
        arch=cfg.arch,
        image_shape=tuple(data.shape) if cfg.arch == "conv" else None,
        conv_channels=parse_widths(cfg.conv_channels, "conv_channels"),
        prior=cfg.prior,
        prior_components=cfg.prior_components,
        prior_flow=cfg.prior_flow,
        prior_flow_depth=cfg.prior_flow_depth,
        vamp_init=cfg.vamp_init,
        vamp_data=data.train if cfg.prior == "vamp" and cfg.vamp_init == "data" else None,
        seed=seed,
    )
    vae.init_output_bias(data.train.mean(0))
    return vae


VAE_FAMILY = ModelFamily(
    name="vae",
    summary="Variational autoencoder: MLP or conv encoder/decoder, learned priors, Bernoulli or Gaussian",
    build=build_vae,
    config=VAEConfig,
    trainer="svi",
    default_estimator="auto",
    likelihood="estimate",
    role="latent variable (bound)",
    sample_observations=True,
    budgets=VAE_BUDGETS,
)


DISCRETE_GUIDES = {"score": "guide", "enum": "guide_enumerated", "relaxed": "guide_relaxed"}


@dataclass
class DiscreteVAEConfig:
    """Settings of the binary-latent VAE (a sigmoid belief net with an amortized guide)."""

    num_latents: int = setting(8, "binary latents (exact evaluation sums over 2^L codes)")
    hidden: str = setting("128", "encoder widths, comma-separated (decoder mirrors)")
    activation: str = setting("relu", "hidden activation", choices=ACTIVATIONS)
    temperature: float = setting(0.5, "relaxation temperature of the relaxed guide")
    guide: str = setting(
        "score",
        "score: Bernoulli guide for score-function estimators; enum: enumerated (estimator enum); "
        "relaxed: straight-through binary Concrete (estimator analytic-kl)",
        choices=tuple(DISCRETE_GUIDES),
    )

    def __post_init__(self) -> None:
        parse_widths(self.hidden, "hidden")
        require_positive(self, "num_latents")


def build_discrete_vae(data, cfg: DiscreteVAEConfig):
    """Return an untrained :class:`~pyro_gen.models.discrete.DiscreteVAE` for binarized ``data``."""
    from ..models.discrete import DiscreteVAE

    model = DiscreteVAE(
        data.dim,
        num_latents=cfg.num_latents,
        hidden=parse_widths(cfg.hidden),
        temperature=cfg.temperature,
        activation=cfg.activation,
    )
    model.init_output_bias(data.train.mean(0))
    return model


def discrete_guide(model, cfg: DiscreteVAEConfig):
    """Return the guide method named by ``cfg.guide``."""
    return getattr(model, DISCRETE_GUIDES[cfg.guide])


def discrete_estimator(cfg: DiscreteVAEConfig) -> str:
    """Return the estimator that fits the guide: enum, analytic-kl (relaxed) or score-baseline."""
    return {"enum": "enum", "relaxed": "analytic-kl"}.get(cfg.guide, "score-baseline")


def evaluate_discrete_vae(model, data, cfg: DiscreteVAEConfig, seed: int = 0) -> dict:
    """Return the exact test ELBO and log-likelihood (nats per point; sums over every code)."""
    import math

    test_ll = float(model.exact_log_likelihood(data.test).mean())
    return {
        "test_elbo": float(model.exact_elbo(data.test).mean()),
        "test_log_likelihood": test_ll,
        "test_bits_per_dim": -test_ll / (data.dim * math.log(2)),
        "likelihood_kind": "exact",
    }


DISCRETE_VAE_FAMILY = ModelFamily(
    name="dvae",
    summary="VAE with binary latents: score function, exact enumeration or relaxation; exact evaluation",
    build=build_discrete_vae,
    config=DiscreteVAEConfig,
    trainer="svi",
    default_estimator=discrete_estimator,
    guide=discrete_guide,
    evaluate=evaluate_discrete_vae,
    likelihood="exact",
    role="latent variable (binary)",
    sample_observations=False,
)
