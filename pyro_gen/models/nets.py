"""Small networks shared by several families."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU}


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: str = "relu") -> nn.Sequential:
    """Return an MLP ``in_dim -> hidden... -> out_dim`` with ``activation`` between layers."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    widths = [in_dim, *hidden]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(widths[-1], out_dim))
    return nn.Sequential(*layers)


class GaussianEncoder(nn.Module):
    """MLP returning ``(loc, scale)`` of a diagonal Gaussian; scale through softplus (> 0)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], latent_dim: int, activation="relu"):
        super().__init__()
        self.net = mlp(in_dim, hidden, 2 * latent_dim, activation)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the Gaussian's location and standard deviation, each ``(..., latent_dim)``."""
        h = self.net(x)
        loc, raw = h.split(self.latent_dim, dim=-1)
        return loc, nn.functional.softplus(raw) + 1e-5


def set_output_bias(
    bias: torch.Tensor,
    data_mean: torch.Tensor,
    *,
    link: str = "logit",
    eps: float = 1e-3,
    shared: bool = False,
) -> None:
    """Set an output layer's ``bias`` in place so the network starts at the data mean; returns None.

    ``link="logit"`` (Bernoulli outputs) writes ``log p - log(1 - p)`` with ``p`` the mean
    clamped to ``[eps, 1 - eps]``; ``link="identity"`` (Gaussian means) writes the mean itself.
    ``shared=True`` writes one value, the link of the overall mean (computed in float64), into
    every entry of ``bias`` (a single bias shared by all pixels). A standard initialization
    (Burda et al. 2015) that starts training at the marginal statistics instead of at 0.5.
    """
    if link not in ("logit", "identity"):
        raise ValueError(f"link must be 'logit' or 'identity', got {link!r}")
    with torch.no_grad():
        mean = data_mean.mean() if shared else data_mean
        if link == "identity":
            bias.copy_(mean)
            return
        p = mean.clamp(eps, 1 - eps)
        if shared:
            p = p.double()
        bias.copy_(torch.log(p) - torch.log1p(-p))


# ----------------------------------------------------------------------------- convolutional
def conv_grid(image_shape: Sequence[int], num_layers: int) -> tuple[int, int]:
    """Return the ``(height, width)`` of the feature maps after ``num_layers`` stride-2 convolutions.

    ``ValueError`` when ``image_shape`` is not ``(H, W)`` or a side is not divisible by
    ``2 ** num_layers`` (each layer halves both sides exactly, so the decoder can mirror it).
    """
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 2:
        raise ValueError(
            f"a convolutional network needs image data of shape (H, W), got data points of shape {shape}"
        )
    step = 2**num_layers
    if num_layers < 1 or any(s % step or s < step for s in shape):
        raise ValueError(
            f"image sides {shape} must be divisible by 2^{num_layers} = {step} for {num_layers} "
            "stride-2 convolutions (choose fewer --conv-channels)"
        )
    return shape[0] // step, shape[1] // step


def he_init(module: nn.Module, activation: str = "relu") -> nn.Module:
    """Re-initialize every convolution, transposed convolution and linear layer of ``module`` with
    He et al.'s (2015) normal init (fan-in, gain of ``activation``; tanh's 5/3, ReLU's otherwise) and
    zero biases; returns ``module``.

    PyTorch's default (uniform, gain 1/sqrt(3)) shrinks the signal layer after layer; through the
    four layers of a convolutional encoder or decoder the code then barely reaches the output
    at the start and a VAE collapses its posterior before the decoder learns to use it.
    """
    nonlinearity = "tanh" if activation == "tanh" else "relu"
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity=nonlinearity)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def cat_features(*parts: torch.Tensor) -> torch.Tensor:
    """Return ``parts`` concatenated along the last dim after broadcasting their leading dims."""
    lead = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return torch.cat([p.expand(*lead, p.shape[-1]) for p in parts], dim=-1)


class ConvEncoder(nn.Module):
    """Convolutional encoder: flattened images ``(..., H*W)`` -> ``(loc, scale)`` of a diagonal Gaussian.

    ``len(channels)`` convolutions with 4x4 kernels, stride 2 and padding 1 (each halves
    both sides), ``activation`` after each, then fully connected layers of widths
    ``hidden`` to ``2 * latent_dim`` outputs (location, softplus scale as
    :class:`GaussianEncoder`). ``context_dim > 0`` appends a context vector (e.g. a one-hot
    label) to the convolutional features before the fully connected layers: ``forward(x,
    context)``. Any leading batch dims are kept. Weights start with :func:`he_init`.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        latent_dim: int,
        channels: Sequence[int] = (32, 64),
        hidden: Sequence[int] = (256,),
        activation: str = "relu",
        context_dim: int = 0,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        channels = [int(c) for c in channels]
        h, w = conv_grid(image_shape, len(channels))
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_dim = int(latent_dim)
        self.context_dim = int(context_dim)
        layers: list[nn.Module] = []
        for a, b in zip([1, *channels[:-1]], channels):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), ACTIVATIONS[activation]()]
        layers.append(nn.Flatten())
        self.conv = nn.Sequential(*layers)
        self.features = channels[-1] * h * w
        head_in = self.features + self.context_dim
        self.head = mlp(head_in, hidden, 2 * latent_dim, activation)
        he_init(self, activation)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the Gaussian's location and standard deviation, each ``(..., latent_dim)``."""
        lead = x.shape[:-1]
        feats = self.conv(x.reshape(-1, 1, *self.image_shape)).reshape(*lead, self.features)
        if self.context_dim:
            feats = cat_features(feats, context)
        loc, raw = self.head(feats).split(self.latent_dim, dim=-1)
        return loc, nn.functional.softplus(raw) + 1e-5


class ConvDecoder(nn.Module):
    """Convolutional decoder: codes ``(..., in_dim)`` -> one output per pixel ``(..., H*W)``.

    Fully connected layers of widths ``hidden`` to ``channels[-1]`` feature maps of size
    ``(H, W) / 2^len(channels)``, then transposed convolutions (4x4, stride 2, padding 1)
    back through ``channels`` reversed to one channel at full size. The last transposed
    convolution has no bias of its own: :attr:`bias` is one learned bias per pixel, so the
    output-bias initialization (:func:`set_output_bias`) works as for an MLP's last layer.
    The outputs are logits (Bernoulli) or means (Gaussian); leading batch dims are kept.
    Weights start with :func:`he_init`.
    """

    def __init__(
        self,
        in_dim: int,
        image_shape: Sequence[int],
        channels: Sequence[int] = (32, 64),
        hidden: Sequence[int] = (256,),
        activation: str = "relu",
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        channels = [int(c) for c in channels]
        h, w = conv_grid(image_shape, len(channels))
        self.image_shape = tuple(int(s) for s in image_shape)
        self.grid = (channels[-1], h, w)
        self.fc = nn.Sequential(
            mlp(in_dim, hidden, channels[-1] * h * w, activation), ACTIVATIONS[activation]()
        )
        layers: list[nn.Module] = []
        widths = list(reversed(channels))
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), ACTIVATIONS[activation]()]
        layers.append(nn.ConvTranspose2d(widths[-1], 1, 4, stride=2, padding=1, bias=False))
        self.deconv = nn.Sequential(*layers)
        self.bias = nn.Parameter(torch.zeros(self.image_shape[0] * self.image_shape[1]))
        he_init(self, activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return the per-pixel outputs ``(..., H*W)`` for codes ``z`` ``(..., in_dim)``."""
        lead = z.shape[:-1]
        maps = self.fc(z).reshape(-1, *self.grid)
        out = self.deconv(maps).reshape(*lead, -1)
        return out + self.bias
