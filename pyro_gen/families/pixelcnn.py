"""The ``pixelcnn`` family: ``pyro-gen fit pixelcnn --data digits`` (binary images, exact likelihood)."""

from __future__ import annotations

import argparse

from ..registry import ModelFamily
from .made import evaluate_autoregressive, load_autoregressive


def _pixelcnn_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--channels", type=int, default=32, help="feature maps per masked convolution")
    p.add_argument("--layers", type=int, default=4, help="type-B 3x3 masked residual layers")
    p.add_argument("--first-kernel", type=int, default=None, help="type-A kernel (default 5 for 8x8, else 7)")


def build_pixelcnn(data, options: dict):
    """Return an untrained :class:`~pyro_gen.models.autoregressive.PixelCNN` for an image ``data`` set."""
    from ..models.autoregressive import PixelCNN

    if not data.is_image:
        raise ValueError(f"pixelcnn needs image data (8x8 digits or 28x28 MNIST), got shape {data.shape}")
    if not data.binarized:
        raise ValueError("pixelcnn models binary pixels: use --binarize dynamic or static")
    net = PixelCNN(
        data.shape,
        channels=int(options.get("channels", 32)),
        num_layers=int(options.get("layers", 4)),
        first_kernel=options.get("first_kernel"),
    )
    net.init_output_bias(data.train.mean(0))
    return net


PIXELCNN_FAMILY = ModelFamily(
    name="pixelcnn",
    summary="PixelCNN: masked convolutions over binary images, exact log-likelihood",
    build=build_pixelcnn,
    add_arguments=_pixelcnn_arguments,
    evaluate=evaluate_autoregressive,
    load=load_autoregressive(build_pixelcnn),
    default_estimator="reparam",
)
