"""The GAN family: ``pyro-gen fit gan --data ring|grid|digits|mnist:PATH|stacked-mnist:PATH --loss ...``.

Trained by the engine's adversarial objective and evaluated without likelihoods: mode
coverage on the ring and grid mixtures, a Frechet distance on classifier features for images,
and on stacked MNIST (three digits as channels, :mod:`pyro_gen.data.stacked`) the number of its
1000 modes a digit classifier finds among the samples and their KL to uniform
(:mod:`pyro_gen.evaluation.classifier`).
The game's own settings (loss, critic steps, gradient penalty, moving average) are flags of
the adversarial trainer; this family adds the networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import parse_widths, require_positive, setting
from ..registry import ModelFamily

# Generator steps when neither --steps nor --epochs is given (the family default budget).
DEFAULT_STEPS = {"ring": 12000, "grid": 16000, "digits": 2000, "mnist": 3000}
DEFAULT_STEPS_OTHER = 2000
# PacGAN packing when --pack is not given: pairs on the ring (a single-sample critic left a
# starved ring mode in seed 2), none on the grid (its 25 modes: the unpacked critic resolves the
# modes' width best, 0.77 of the data's against 0.73 for pairs), single images otherwise.
DEFAULT_PACK = {"ring": 2, "grid": 1}
# The critic's architecture when --arch is auto, by data set: on the mixtures each packed
# sample goes through one shared trunk first. A plain packed MLP critic cannot resolve the
# modes' width, and its samples collapse within modes (medians 0.53-0.68 of the data's spread
# in benchmarks/gan.py); with one sample per trunk the ring keeps 0.79-0.86. With pack 1 the shared critic
# is the plain MLP (same layers, same initialization). Elsewhere GAN.for_data's auto.
DEFAULT_ARCH = {"ring": "mlp-shared", "grid": "mlp-shared"}


@dataclass
class GANConfig:
    """Settings of the GAN's networks and of its sample evaluation."""

    pack: int | None = setting(None, "PacGAN: samples the critic judges jointly (default 2 on ring, else 1)")
    latent_dim: int | None = setting(None, "noise dimensions (default 2 for 2-D data, else 32)")
    arch: str = setting(
        "auto",
        "networks (auto: mlp-shared on ring/grid, conv for 8x8/28x28 images, dcgan for multi-channel "
        "images, else mlp; mlp-shared: each packed sample through one critic trunk; dcgan: the "
        "four-layer DCGAN pair, packed samples on the channel axis)",
        choices=("auto", "mlp", "mlp-shared", "conv", "dcgan"),
    )
    hidden: str = setting("128,128,128", "MLP widths of the generator (and critic)")
    disc_hidden: str | None = setting(None, "MLP widths of the critic (default: --hidden)")
    width: int = setting(32, "channels of the convolutional networks (dcgan: of its first critic layer)")
    eval_samples: int = setting(2500, "samples drawn for the metrics (PacGAN's stacked MNIST: 26000)")
    classifier_epochs: int = setting(3, "epochs of the digit classifier that labels stacked-MNIST samples")

    def __post_init__(self) -> None:
        parse_widths(self.hidden, "hidden")
        if self.disc_hidden:
            parse_widths(self.disc_hidden, "disc_hidden")
        require_positive(self, "pack", "latent_dim", "width", "eval_samples", "classifier_epochs")


def build_gan(data, cfg: GANConfig):
    """Return an untrained :class:`~pyro_gen.models.gan.GAN` for ``data`` (vector data standardized,
    images left in [0, 1])."""
    from ..models.gan import GAN

    gan = GAN.for_data(
        data.dim,
        data.shape,
        latent_dim=cfg.latent_dim,
        arch=DEFAULT_ARCH.get(data.name, "auto") if cfg.arch == "auto" else cfg.arch,
        hidden=parse_widths(cfg.hidden),
        disc_hidden=parse_widths(cfg.disc_hidden, "disc_hidden") if cfg.disc_hidden else None,
        width=cfg.width,
        pack=cfg.pack or DEFAULT_PACK.get(data.name, 1),
    )
    if len(data.shape) == 1 and data.train.shape[0] > 1:
        gan.standardize(data.train)
    return gan


def gan_budget(data) -> dict:
    """Return the family's budget in generator steps for ``data`` (monitored ten times on mixtures)."""
    steps = DEFAULT_STEPS.get(data.name, DEFAULT_STEPS_OTHER)
    return (
        {"steps": steps, "eval_every": max(1, steps // 10)}
        if "means" in (data.info or {})
        else {"steps": steps}
    )


def monitor_gan(model, data, cfg: GANConfig, seed: int = 0) -> dict[str, Any]:
    """Return the mode metrics logged during training on the ring/grid mixtures (nothing on other data)."""
    if "means" not in (data.info or {}) or "std" not in (data.info or {}):
        return {}
    return evaluate_gan(model, data, cfg, seed, during_training=True)


def gan_threads(data) -> int:
    """Return 1: these nets are small, one intra-op thread beats two contended ones on a shared machine."""
    return 1


def gan_samples(model, cfg: GANConfig, seed: int):
    """Return ``cfg.eval_samples`` samples drawn with a stream of their own (the caller's is untouched)."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed + 12345)
        return model.sample(cfg.eval_samples)


# the mixture metrics logged during training (the MMD is left to the final evaluation: it costs ~1 s)
MONITORED = ("modes_captured", "high_quality_share", "kl_to_uniform", "within_mode_spread")


def evaluate_gan(model, data, cfg: GANConfig, seed: int = 0, during_training: bool = False) -> dict[str, Any]:
    """Return sample metrics: mode coverage on the ring/grid mixtures, Frechet distances on images.

    On the mixtures: :func:`~pyro_gen.evaluation.samples.mixture_sample_metrics` (modes,
    high-quality share, KL in nats, within-mode spread as a ratio to the data's std, and the
    MMD^2 against the test split with its data-vs-data floor); during training only
    :data:`MONITORED`.
    """
    from ..evaluation.samples import (
        feature_classifier_for,
        frechet_distance,
        mixture_sample_metrics,
        mode_metrics_for_data,
    )

    if is_stacked_data(data):
        return {} if during_training else evaluate_stacked(model, data, cfg, seed)
    samples = gan_samples(model, cfg, seed)
    if "means" in (data.info or {}) and "std" in (data.info or {}):
        if during_training:
            m = mode_metrics_for_data(data, samples)
            return {k: m[k] for k in MONITORED}
        return mixture_sample_metrics(data, samples)
    if during_training:
        return {}
    out: dict[str, Any] = {"eval_samples": cfg.eval_samples}
    if data.is_image and data.train_labels is not None:
        clf = feature_classifier_for(data, seed=seed)
        out["frechet_distance"] = frechet_distance(samples, data.test, clf.features)
        # the floor: training images against the test set, same number of points
        ref = data.train[: min(cfg.eval_samples, data.train.shape[0])]
        out["frechet_distance_train_vs_test"] = frechet_distance(ref, data.test, clf.features)
        out["feature_classifier_accuracy"] = clf.accuracy_
    else:
        out["frechet_distance_raw"] = frechet_distance(samples, data.test)
    return out


def is_stacked_data(data) -> bool:
    """Return True for a stacked-digit data set (:func:`pyro_gen.data.stacked.load_stacked_mnist`)."""
    return bool((getattr(data, "info", None) or {}).get("stacked"))


#: generated images labelled at a time on stacked MNIST (bounds the memory of 26,000 samples)
SAMPLE_CHUNK = 2000
#: the seed of the digit classifier that labels stacked-MNIST samples (the same for every run)
CLASSIFIER_SEED = 0


def evaluate_stacked(model, data, cfg: GANConfig, seed: int = 0) -> dict[str, Any]:
    """Return the stacked-MNIST mode metrics of ``cfg.eval_samples`` samples.

    A :class:`~pyro_gen.evaluation.classifier.DigitClassifier` trained on the MNIST training
    set of the folder the set was built from (``data.info["path"]``, ``cfg.classifier_epochs``
    epochs, seed :data:`CLASSIFIER_SEED` whatever the run's seed, so every run is counted by
    the same classifier) labels each channel; returns ``modes_captured`` (of
    ``num_modes`` = 1000), ``kl_to_uniform`` (nats, KL(samples' modes || uniform), empty modes
    contributing 0), ``classifier_test_accuracy`` (0-1, on MNIST's test set), ``eval_samples``,
    and the same two numbers for ``eval_samples`` stacked training images
    (``data_modes_captured``, ``data_kl_to_uniform``: the best a sample of that size reaches).
    Samples are drawn ``SAMPLE_CHUNK`` at a time with a random stream of their own.
    """
    import torch

    from ..evaluation.classifier import digit_classifier_for, mode_coverage, stacked_mode_metrics

    info = data.info or {}
    channels = int(info.get("channels", 3))
    clf = digit_classifier_for(info["path"], epochs=cfg.classifier_epochs, seed=CLASSIFIER_SEED)
    chunks = []
    with torch.random.fork_rng():
        torch.manual_seed(seed + 12345)
        for start in range(0, cfg.eval_samples, SAMPLE_CHUNK):
            chunks.append(model.sample(min(SAMPLE_CHUNK, cfg.eval_samples - start)).cpu())
    out = stacked_mode_metrics(torch.cat(chunks), clf, channels)
    n = min(cfg.eval_samples, data.train.shape[0])
    if data.train_labels is not None:
        ref = mode_coverage(data.train_labels[:n], int(info.get("num_modes", 10**channels)))
        out["data_modes_captured"], out["data_kl_to_uniform"] = ref["modes_captured"], ref["kl_to_uniform"]
    out["eval_samples"] = cfg.eval_samples
    return out


def checkpoint_critic(module_state: dict, data_dim: int, channels: int = 1) -> tuple[str | None, int | None]:
    """Return ``(arch, pack)`` of the critic whose weights are in ``module_state`` (None if unknown).

    ``arch`` is ``"mlp-shared"`` for a shared-trunk critic, ``"mlp"``, ``"conv"`` or
    ``"dcgan"``; the packing is read from the first layer (an MLP's input width is
    ``pack * data_dim``, a conv critic's input channels are ``pack`` and a DCGAN critic's
    ``pack * channels``, ``channels`` those of one image; a shared trunk's head reads ``pack``
    trunk outputs).
    """
    w = module_state.get("discriminator.layers.0.weight")
    if w is not None and w.dim() == 4 and w.shape[1] % channels == 0:
        return "dcgan", int(w.shape[1] // channels)
    trunk = module_state.get("discriminator.trunk.0.weight")
    head = module_state.get("discriminator.head.0.weight")
    if trunk is not None and head is not None and head.shape[1] % trunk.shape[0] == 0:
        last = max(
            (k for k in module_state if k.startswith("discriminator.trunk.") and k.endswith(".weight")),
            key=lambda k: int(k.split(".")[2]),
        )
        return "mlp-shared", int(head.shape[1] // module_state[last].shape[0])
    if "discriminator.0.weight" in module_state:
        arch = "mlp"
    elif "discriminator.net.0.weight" in module_state:
        arch = "conv"
    else:
        arch = None
    return arch, checkpoint_pack(module_state, data_dim)


def checkpoint_pack(module_state: dict, data_dim: int) -> int | None:
    """Return the packing of a plain MLP or conv critic in ``module_state`` (None if unknown).

    Read from the critic's first layer: an MLP's input width is ``pack * data_dim``, a conv
    critic's input channels are ``pack``.
    """
    w = module_state.get("discriminator.0.weight")
    if w is not None and w.dim() == 2 and w.shape[1] % data_dim == 0:
        return int(w.shape[1] // data_dim)
    w = module_state.get("discriminator.net.0.weight")
    if w is not None and w.dim() == 4:
        return int(w.shape[1])
    return None


def load_gan(run_dir, cfg: GANConfig, data):
    """Rebuild the trained GAN of a run folder from its ``checkpoint.pt`` (in eval mode).

    When the packing or the critic's architecture was left to the family (``pack`` None,
    ``arch`` auto in ``config.json``) they are read from the checkpoint's critic, so a run
    trained under an earlier default loads as it was trained. ``FileNotFoundError`` without a
    checkpoint, ``ValueError`` when the checkpoint does not fit the configuration.
    """
    import dataclasses
    from pathlib import Path

    from ..inference import load_checkpoint

    ckpt = Path(run_dir) / "checkpoint.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{run_dir} holds no {ckpt.name}: the run was never trained")
    state = load_checkpoint(ckpt)["module_state"] or {}
    channels = int(data.shape[0]) if len(data.shape) == 3 else 1
    arch, pack = checkpoint_critic(state, data.dim, channels)
    if cfg.pack is None and pack is not None:
        cfg = dataclasses.replace(cfg, pack=pack)
    if cfg.arch == "auto" and arch in ("mlp", "mlp-shared"):
        cfg = dataclasses.replace(cfg, arch=arch)
    model = build_gan(data, cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ValueError(f"{ckpt} does not match the model in config.json ({first})") from e
    model.eval()
    return model


GAN_FAMILY = ModelFamily(
    name="gan",
    summary="GAN: implicit generator z ~ N(0, I), x = G(z); minimax / ns / wgan-gp / hinge / lsgan, PacGAN",
    build=build_gan,
    config=GANConfig,
    trainer="adversarial",
    default_estimator="adversarial",
    # lsgan: the best of the five losses on grid-25 in benchmarks/gan.py
    defaults={
        "batch_size": 512,
        "binarize": "none",
        "lr_schedule": "linear",
        "loss": "lsgan",
        "checkpoint_every": 500,
        "log_every": 100,
    },
    budget=gan_budget,
    threads=gan_threads,
    evaluate=evaluate_gan,
    monitor=monitor_gan,
    load=load_gan,
    likelihood=None,
    role="implicit",
    budgets={"smoke": {"steps": 3}, "quick": {"steps": 300}, "full": {}},
)
