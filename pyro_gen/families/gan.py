"""The GAN family: ``pyro-gen fit gan --data ring|grid|digits|mnist:PATH --loss ns|...|lsgan``.

Trained by the adversarial loop (not SVI) and evaluated without likelihoods: mode coverage on
the ring and grid mixtures, a Frechet distance on classifier features for images.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ..registry import ModelFamily

# Generator steps when neither --steps nor --epochs is given (the family default budget).
DEFAULT_STEPS = {"ring": 12000, "grid": 16000, "digits": 2000, "mnist": 3000}
DEFAULT_STEPS_OTHER = 2000
DEFAULT_LOSS = "lsgan"  # the best of the five on grid-25 in benchmarks/gan.py
DEFAULT_BATCH_SIZE = 512
# PacGAN packing when --pack is not given: pairs on the mixtures (fixes the starved modes of
# single-sample critics in benchmarks/gan.py), single images otherwise.
DEFAULT_PACK = {"ring": 2, "grid": 2}
DEFAULT_EMA = None  # moving average of the generator weights (off: linear lr decay to 0 suffices)
EPOCHS_SENTINEL = 0.0  # the gan sub-command's --epochs default: "let the family choose the budget"


def _gan_arguments(p: argparse.ArgumentParser) -> None:
    from ..inference.adversarial import LOSSES

    p.add_argument(
        "--loss",
        default=None,
        choices=list(LOSSES),
        help=f"adversarial loss (ns = non-saturating; default {DEFAULT_LOSS})",
    )
    p.add_argument(
        "--pack",
        type=int,
        default=None,
        help="PacGAN: samples the critic judges jointly (default 2 on ring/grid, else 1)",
    )
    p.add_argument(
        "--latent-dim", type=int, default=None, help="noise dimensions (default 2 for 2-D data, else 32)"
    )
    p.add_argument(
        "--arch", default="auto", choices=["auto", "mlp", "conv"], help="networks (auto: conv for images)"
    )
    p.add_argument("--hidden", default="128,128,128", help="MLP widths of the generator (and critic)")
    p.add_argument("--disc-hidden", default=None, help="MLP widths of the critic (default: --hidden)")
    p.add_argument("--width", type=int, default=32, help="channels of the convolutional networks")
    p.add_argument(
        "--d-steps", type=int, default=None, help="critic updates per generator update (wgan-gp: 5)"
    )
    p.add_argument("--gp-weight", type=float, default=10.0, help="WGAN-GP gradient-penalty weight")
    p.add_argument("--lr-d", type=float, default=None, help="discriminator learning rate (default --lr)")
    p.add_argument("--beta1", type=float, default=0.5, help="Adam beta1 of both players")
    p.add_argument(
        "--lr-decay", default="linear", choices=["linear", "constant"], help="learning-rate schedule"
    )
    p.add_argument(
        "--ema",
        type=float,
        default=None,
        help=f"decay of the sampled moving average of generator weights (0: off; default {DEFAULT_EMA})",
    )
    p.add_argument(
        "--checkpoint-every", type=int, default=500, help="generator steps between checkpoints (for --resume)"
    )
    p.add_argument("--eval-samples", type=int, default=2500, help="samples drawn for the metrics")
    # The GAN's own budget and data defaults: grey-level images, batches of 512, and a
    # per-data-set number of generator steps (DEFAULT_STEPS) unless --steps/--epochs is given.
    p.set_defaults(epochs=EPOCHS_SENTINEL, batch_size=DEFAULT_BATCH_SIZE, binarize="none")


def _options(options: dict, data_name: str | None = None) -> dict:
    hidden = [int(h) for h in str(options.get("hidden") or "128,128,128").split(",") if h]
    disc_hidden = options.get("disc_hidden")
    ema = options.get("ema")
    ema = DEFAULT_EMA if ema is None else (float(ema) or None)  # --ema 0 switches it off
    return {
        "disc_hidden": None if not disc_hidden else [int(h) for h in str(disc_hidden).split(",") if h],
        "ema": ema,
        "loss": options.get("loss") or DEFAULT_LOSS,
        "pack": int(options.get("pack") or DEFAULT_PACK.get(data_name, 1)),
        "latent_dim": options.get("latent_dim"),
        "arch": options.get("arch", "auto"),
        "hidden": hidden,
        "width": int(options.get("width") or 32),
    }


def _build_gan(data, options: dict):
    from ..inference.adversarial import check_loss
    from ..models.gan import GAN

    o = _options(options, data.name)
    check_loss(o["loss"])
    gan = GAN.for_data(
        data.dim,
        data.shape,
        latent_dim=None if o["latent_dim"] is None else int(o["latent_dim"]),
        arch=o["arch"],
        hidden=o["hidden"],
        disc_hidden=o["disc_hidden"],
        width=o["width"],
        pack=o["pack"],
    )
    if not data.is_image and data.train.shape[0] > 1:
        gan.standardize(data.train)
    return gan


def _budget(data, config: dict) -> tuple[int | None, float | None]:
    steps, epochs = config.get("steps"), config.get("epochs")
    if steps is not None:
        return int(steps), None
    if epochs is None or epochs == EPOCHS_SENTINEL:
        return DEFAULT_STEPS.get(data.name, DEFAULT_STEPS_OTHER), None
    return None, float(epochs)


def _evaluate_gan(model, data, config: dict, *, during_training: bool = False) -> dict[str, Any]:
    from ..inference.metrics import feature_classifier_for, frechet_distance, mode_metrics_for_data

    options = config.get("options", {}) or {}
    num = int(options.get("eval_samples") or 2500)
    if num <= 0:
        raise ValueError(f"--eval-samples must be positive, got {num}")
    with torch.random.fork_rng():
        torch.manual_seed(int(config.get("seed", 0)) + 12345)
        samples = model.sample(num)
    if "means" in (data.info or {}) and "std" in (data.info or {}):
        m = mode_metrics_for_data(data, samples)
        if during_training:
            return {k: m[k] for k in ("modes_captured", "high_quality_share", "kl_to_uniform")}
        return m
    if during_training:
        return {}
    out: dict[str, Any] = {"eval_samples": num}
    if data.is_image and data.train_labels is not None:
        clf = feature_classifier_for(data, seed=int(config.get("seed", 0)))
        out["frechet_distance"] = frechet_distance(samples, data.test, clf.features)
        # the floor: training images against the test set, same number of points
        ref = data.train[: min(num, data.train.shape[0])]
        out["frechet_distance_train_vs_test"] = frechet_distance(ref, data.test, clf.features)
        out["feature_classifier_accuracy"] = clf.accuracy_
    else:
        out["frechet_distance_raw"] = frechet_distance(samples, data.test)
    return out


def _fit(model, data, config, options, o, steps, epochs, d_steps, beta1, beta2, out):
    from .. import runs
    from ..inference.adversarial import train_gan

    is_mixture = "means" in (data.info or {})
    eval_every = max(1, (steps or 1000) // 10) if is_mixture else None
    ckpt = Path(out) / runs.CHECKPOINT
    resume = bool(config.get("resume"))
    if resume and not ckpt.is_file():
        raise ValueError(f"--resume: {ckpt} does not exist")
    every = options.get("checkpoint_every")
    return train_gan(
        model,
        data.train,
        loss=o["loss"],
        steps=steps,
        epochs=epochs,
        batch_size=int(config.get("batch_size", DEFAULT_BATCH_SIZE)),
        lr=float(config.get("lr", 1e-3)),
        lr_d=options.get("lr_d"),
        betas=(beta1, beta2),
        d_steps=int(d_steps),
        gp_weight=float(options.get("gp_weight", 10.0) if options.get("gp_weight") is not None else 10.0),
        lr_schedule=options.get("lr_decay") or "linear",
        transform=data.batch_transform,
        seed=int(config.get("seed", 0)),
        eval_fn=(lambda g: _evaluate_gan(g, data, config, during_training=True)) if is_mixture else None,
        eval_every=eval_every,
        checkpoint=ckpt,
        checkpoint_every=500 if every is None else int(every),
        resume=ckpt if resume else None,
        device=config.get("device"),
        ema=o["ema"],
        progress=config.get("progress"),  # None lets tqdm decide
    )


def _train_gan(model, data, config: dict, out: Path):
    from ..report.gan import plot_gan_losses, plot_mode_coverage

    options = config.get("options", {}) or {}
    o = _options(options, data.name)
    steps, epochs = _budget(data, config)
    d_steps = options.get("d_steps") or (5 if o["loss"] == "wgan-gp" else 1)
    beta1 = float(options.get("beta1", 0.5) if options.get("beta1") is not None else 0.5)
    beta2 = 0.9 if o["loss"] == "wgan-gp" else 0.999
    is_mixture = "means" in (data.info or {})
    threads = torch.get_num_threads()
    # These nets are small: one intra-op thread is much faster than two contended ones on a
    # shared machine (measured: conv digits GAN ~3 s/step with 2 threads under load).
    torch.set_num_threads(1)
    try:
        result = _fit(model, data, config, options, o, steps, epochs, d_steps, beta1, beta2, out)
    finally:
        torch.set_num_threads(threads)
        model.cpu()  # (after --device cuda) evaluation, figures and loading work on the CPU
    plot_gan_losses(result.history, out / "gan_losses.png", title=f"GAN ({o['loss']}, pack {o['pack']})")
    if is_mixture:
        from ..inference.metrics import mode_metrics_for_data

        with torch.random.fork_rng():
            torch.manual_seed(int(config.get("seed", 0)) + 12345)
            samples = model.sample(int(options.get("eval_samples") or 2500))
        metrics = mode_metrics_for_data(data, samples)
        plot_mode_coverage(
            samples, torch.tensor(data.info["means"]), data.info["std"], out / "modes.png", metrics
        )
    return result


GAN_FAMILY = ModelFamily(
    name="gan",
    summary="GAN: implicit generator z ~ N(0, I), x = G(z); minimax / ns / wgan-gp / hinge / lsgan, PacGAN",
    build=_build_gan,
    add_arguments=_gan_arguments,
    train=_train_gan,
    evaluate=_evaluate_gan,
    default_estimator="adversarial",
)
