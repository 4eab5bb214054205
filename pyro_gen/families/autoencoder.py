"""The ``autoencoder`` family: ``pyro-gen fit autoencoder --data digits --kind denoising``.

A deterministic autoencoder (plain, sparse, denoising or contractive) trained by its own
minibatch loop; evaluated by its held-out loss and by a linear probe (logistic regression)
on the encoder's codes, next to the same probe on raw pixels. It has no likelihood and
does not sample.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..registry import ModelFamily


def _ae_arguments(p: argparse.ArgumentParser) -> None:
    from ..models.autoencoders import CODE_ACTIVATIONS, KINDS, LOSSES, NOISES

    p.add_argument("--kind", default="plain", choices=list(KINDS), help="regulariser")
    p.add_argument("--code-dim", type=int, default=32, help="code (bottleneck) width")
    p.add_argument("--hidden", default="256", help="encoder widths, comma-separated (decoder mirrors)")
    p.add_argument("--activation", default="relu", choices=["relu", "tanh", "softplus", "elu"])
    p.add_argument("--code-activation", default="sigmoid", choices=sorted(CODE_ACTIVATIONS))
    p.add_argument("--loss", default="bce", choices=list(LOSSES), help="reconstruction loss")
    p.add_argument("--weight", type=float, default=None, help="sparse/contractive penalty weight")
    p.add_argument("--noise", default="mask", choices=list(NOISES), help="denoising corruption")
    p.add_argument("--noise-level", type=float, default=0.3, help="masking probability nu, or Gaussian std")


DEFAULT_WEIGHT = {"sparse": 1e-2, "contractive": 0.1}


def build_autoencoder(data, options: dict):
    """Return an untrained :class:`~pyro_gen.models.autoencoders.Autoencoder` for ``data``."""
    from ..models.autoencoders import Autoencoder

    kind = options.get("kind", "plain")
    weight = options.get("weight")
    ae = Autoencoder(
        data.dim,
        code_dim=int(options.get("code_dim", 32)),
        hidden=[int(h) for h in str(options.get("hidden", "256")).split(",") if h],
        activation=options.get("activation", "relu"),
        code_activation=options.get("code_activation", "sigmoid"),
        loss=options.get("loss", "bce"),
        kind=kind,
        weight=float(DEFAULT_WEIGHT.get(kind, 1e-3) if weight is None else weight),
        noise=options.get("noise", "mask"),
        noise_level=float(options.get("noise_level", 0.3)),
    )
    ae.init_output_bias(data.train.mean(0))
    return ae


def train_autoencoder_family(model, data, config: dict, out: Path):
    """Train with ``train_autoencoder``; write ``checkpoint.pt`` and ``loss.png``; return the FitResult."""
    from ..inference.autoencoder_train import train_autoencoder
    from ..inference.checkpoint import save_checkpoint
    from ..report.families import plot_loss_curve

    result = train_autoencoder(
        model,
        data.train,
        epochs=config.get("epochs"),
        steps=config.get("steps"),
        batch_size=int(config.get("batch_size", 128)),
        lr=float(config.get("lr", 1e-3)),
        optimizer=config.get("optimizer", "adam"),
        test_data=data.test,
        transform=data.batch_transform,
        seed=int(config.get("seed", 0)),
        progress=bool(config.get("progress", sys.stderr.isatty())),
    )
    out = Path(out)
    state = {
        "module_state": model.state_dict(),
        "optimizer_state": None,
        "param_store": {"params": {}, "constraints": {}},
        "rng": None,
        "loop": {"step": result.steps},
        "history": result.history,
        "seconds": result.seconds,
    }
    result.checkpoint = save_checkpoint(state, out / "checkpoint.pt")
    plot_loss_curve(result.history, out / "loss.png", title=f"{model.kind} autoencoder")
    return result


def evaluate_autoencoder(model, data, config: dict) -> dict:
    """Return ``test_loss`` (per point), ``probe_accuracy`` on codes and ``probe_accuracy_raw_pixels``."""
    from ..inference.autoencoder_train import autoencoder_loss
    from ..inference.probe import probe_split

    seed = int(config.get("seed", 0))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        test_loss = autoencoder_loss(model, data.test)
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


def load_autoencoder(run_dir, config: dict):
    """Rebuild a trained autoencoder from a run folder."""
    from ..data import DataSplit
    from ..inference.checkpoint import load_checkpoint

    dim = int(config["dim"])
    stub = DataSplit("stub", torch.full((1, dim), 0.5), torch.full((1, dim), 0.5), tuple(config["shape"]))
    model = build_autoencoder(stub, config.get("options", {}))
    model.load_state_dict(load_checkpoint(Path(run_dir) / "checkpoint.pt")["module_state"])
    model.eval()
    return model


AUTOENCODER_FAMILY = ModelFamily(
    name="autoencoder",
    summary="Deterministic autoencoder: plain, sparse, denoising, contractive; linear-probe evaluation",
    build=build_autoencoder,
    add_arguments=_ae_arguments,
    train=train_autoencoder_family,
    evaluate=evaluate_autoencoder,
    load=load_autoencoder,
    default_estimator="autoencoder",
)
