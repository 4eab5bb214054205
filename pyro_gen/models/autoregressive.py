"""Autoregressive explicit-density models: MADE and a small PixelCNN, as Pyro models.

Both factorise ``p(x) = prod_d p(x_d | x_<d)`` with one network pass whose connectivity is
masked so that output ``d`` sees only the inputs before ``d`` in a fixed order:

* :class:`MADE` (Germain et al. 2015): an MLP with masked weight matrices, for binary
  (Bernoulli conditionals) or continuous (Gaussian conditionals) vectors;
* :class:`PixelCNN` (van den Oord et al. 2016): masked convolutions over a one-channel image
  in raster order (type ``A`` mask in the first layer hides the current pixel, type ``B``
  afterwards), Bernoulli conditionals, for 8x8 digits and 28x28 MNIST alike; plain masked
  residual layers or the paper's bottleneck residual blocks (:class:`ResidualBlock`).

As Pyro programs they have no latent variables: ``model(x)`` observes ``x`` inside
:func:`~pyro_gen.models.base.data_plate` under the exact autoregressive density and
``guide(x)`` does nothing, so the ELBO *is* the log-likelihood and
:func:`pyro_gen.inference.fit` trains them by maximum likelihood. :meth:`log_prob` returns
the exact log-likelihood (nats per data point) and :meth:`sample` draws ancestrally, one
dimension at a time (``D`` network passes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ..data.checks import check_unit_interval
from .base import data_plate
from .nets import ACTIVATIONS, set_output_bias

MADE_LIKELIHOODS = ("bernoulli", "gaussian")


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 ``mask`` of shape ``(out, in)``."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        if mask.shape != (out_features, in_features):
            raise ValueError(f"mask must have shape {(out_features, in_features)}, got {tuple(mask.shape)}")
        self.register_buffer("mask", mask.to(torch.get_default_dtype()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x @ (mask * W).T + b``."""
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


MADE_DEGREES = ("cycle", "random")


def made_degrees(
    input_dim: int,
    hidden: Sequence[int],
    order: torch.Tensor,
    kind: str = "cycle",
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """Return the MADE degrees: ``order + 1`` for the inputs, then one tensor per hidden layer.

    Input ``i`` has degree ``order[i] + 1`` (its position, 1-based); a hidden unit of degree
    ``k`` may depend on inputs of degree ``<= k``. ``kind="cycle"``: hidden units cycle
    through ``1 .. D - 1`` (deterministic, so every degree is represented when the layer is
    wide enough). ``kind="random"`` (Germain et al. 2015, Section 4): each unit of layer
    ``l`` draws its degree uniformly from ``min(degrees of layer l-1) .. D - 1`` with
    ``generator`` (give a seeded one for a reproducible model).
    """
    if kind not in MADE_DEGREES:
        raise ValueError(f"degrees must be one of {MADE_DEGREES}, got {kind!r}")
    degrees = [order + 1]
    for width in hidden:
        if input_dim <= 1:  # nothing precedes the only dimension: hidden units see no input
            degrees.append(torch.full((width,), input_dim + 1))
        elif kind == "cycle":
            degrees.append(torch.arange(width) % (input_dim - 1) + 1)
        else:
            low = min(int(degrees[-1].min()), input_dim - 1)
            degrees.append(torch.randint(low, input_dim, (width,), generator=generator))
    return degrees


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation over vectors ``(N, input_dim)``.

    ``likelihood="bernoulli"`` (binary data; grey levels in [0, 1] are scored as soft labels)
    or ``"gaussian"`` (continuous data: ``x_d ~ N(mu_d(x_<d), sigma_d(x_<d))``). ``order`` is
    a permutation of ``range(input_dim)`` giving each dimension's position in the
    autoregressive order (default: the natural order). ``degrees`` picks the hidden units'
    degrees (:func:`made_degrees`: ``"cycle"``, or ``"random"`` drawn with ``mask_seed``, so
    the same settings rebuild the same masks). ``direct=True`` adds a masked linear
    connection from the inputs straight to the outputs (output ``d`` sees the inputs before
    ``d``), as the paper's code does with ``direct_input_connect Output``.
    """

    def __init__(
        self,
        input_dim: int,
        hidden: Sequence[int] = (256,),
        likelihood: str = "bernoulli",
        order: Sequence[int] | torch.Tensor | None = None,
        activation: str = "relu",
        min_scale: float = 1e-3,
        degrees: str = "cycle",
        mask_seed: int = 0,
        direct: bool = False,
    ):
        super().__init__()
        if degrees not in MADE_DEGREES:
            raise ValueError(f"degrees must be one of {MADE_DEGREES}, got {degrees!r}")
        if likelihood not in MADE_LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {MADE_LIKELIHOODS}, got {likelihood!r}")
        if input_dim <= 0:
            raise ValueError(f"input_dim must be positive, got {input_dim}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if any(int(h) <= 0 for h in hidden):
            raise ValueError(f"hidden widths must be positive, got {list(hidden)}")
        order_t = torch.arange(input_dim) if order is None else torch.as_tensor(order, dtype=torch.long)
        if order_t.shape != (input_dim,) or not torch.equal(order_t.sort().values, torch.arange(input_dim)):
            raise ValueError(f"order must be a permutation of range({input_dim}), got {order_t.tolist()}")
        self.input_dim = int(input_dim)
        self.likelihood = likelihood
        self.min_scale = float(min_scale)
        self.config = dict(
            input_dim=input_dim,
            hidden=list(hidden),
            likelihood=likelihood,
            order=order_t.tolist(),
            activation=activation,
            min_scale=min_scale,
            degrees=degrees,
            mask_seed=mask_seed,
            direct=direct,
        )
        self.register_buffer("order", order_t)
        gen = torch.Generator().manual_seed(int(mask_seed))
        degs = made_degrees(input_dim, list(hidden), order_t, kind=degrees, generator=gen)
        layers: list[nn.Module] = []
        for d_in, d_out in zip(degs[:-1], degs[1:]):
            layers += [
                MaskedLinear(len(d_in), len(d_out), d_out[:, None] >= d_in[None, :]),
                ACTIVATIONS[activation](),
            ]
        self.num_params = 1 if likelihood == "bernoulli" else 2
        out_deg = (order_t + 1).repeat(self.num_params)
        layers.append(MaskedLinear(len(degs[-1]), len(out_deg), out_deg[:, None] > degs[-1][None, :]))
        self.net = nn.Sequential(*layers)
        # only when asked for, so that the weights of a model without it keep their names
        self.direct = (
            MaskedLinear(input_dim, len(out_deg), out_deg[:, None] > degs[0][None, :], bias=False)
            if direct
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the conditionals' parameters ``(N, num_params * D)``: logits, or [means, raw scales]."""
        out = self.net(x)
        return out if self.direct is None else out + self.direct(x)

    def conditional(self, x: torch.Tensor) -> dist.TorchDistribution:
        """Return ``prod_d p(x_d | x_<d)`` evaluated with the prefixes of ``x``, event shape ``(D,)``.

        Its ``log_prob(x)`` is the exact log-likelihood of ``x``.
        """
        out = self(x)
        if self.likelihood == "bernoulli":
            # validate_args off: grey levels are scored as soft labels (check_data enforces [0, 1]).
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        loc, raw = out.split(self.input_dim, dim=-1)
        return dist.Normal(loc, nn.functional.softplus(raw) + self.min_scale).to_event(1)

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` when ``x`` is not ``(N, input_dim)`` or (Bernoulli) outside [0, 1]."""
        if x.dim() != 2 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"{name} must have shape (N, {self.input_dim}) for this MADE, got {tuple(x.shape)}"
            )
        if self.likelihood == "bernoulli":
            check_unit_interval(x, name)

    def model(self, x: torch.Tensor) -> None:
        """Observe ``x`` under the exact autoregressive density (no latent variables)."""
        with data_plate(x):
            pyro.sample("x", self.conditional(x), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        """No latent variables: the empty guide makes the ELBO the exact log-likelihood."""

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact log-likelihood of each row of ``x``, ``(N,)`` in nats."""
        return self.conditional(x).log_prob(x)

    def init_output_bias(self, data_mean: torch.Tensor) -> None:
        """Start the Bernoulli conditionals at the marginal pixel frequencies (logits of the mean)."""
        if self.likelihood == "bernoulli":
            set_output_bias(self.net[-1].bias, data_mean, link="logit")

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Return ``(num_samples, D)`` draws by ancestral sampling in ``order`` (D network passes)."""
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        x = torch.zeros(num_samples, self.input_dim)
        for d in torch.argsort(self.order).tolist():
            x[:, d] = self.conditional(x).base_dist.sample()[:, d]
        return x


class MaskedConv2d(nn.Conv2d):
    """A ``same``-padded convolution that sees only pixels before the centre in raster order.

    ``mask_type="A"`` also hides the centre (first layer: output at a pixel never sees that
    pixel's input); ``"B"`` keeps it (later layers: a feature may combine its own position's
    features, which already exclude the pixel).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str):
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        mask = torch.ones(kernel_size, kernel_size)
        c = kernel_size // 2
        mask[c, c + (mask_type == "B") :] = 0
        mask[c + 1 :, :] = 0
        self.register_buffer("mask", mask[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the masked convolution of ``x`` ``(N, C, H, W)``."""
        return self._conv_forward(x, self.weight * self.mask, self.bias)


PIXELCNN_BLOCKS = ("conv", "bottleneck")


class ResidualBlock(nn.Module):
    """The residual block of van den Oord et al. (2016, Figure 5) for PixelCNN.

    ``x + conv1x1(relu(conv3x3_B(relu(conv1x1(relu(x))))))``: ``channels`` (the paper's
    ``2h``) feature maps in and out, ``hidden`` (``h``) inside, one type-B masked 3x3
    convolution. With one colour channel the paper's type-B 1x1 convolutions are plain 1x1
    convolutions, so the block keeps the autoregressive property of its masked 3x3.
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.conv = MaskedConv2d(hidden, hidden, 3, "B")
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` plus the block's residual, same shape ``(N, channels, H, W)``."""
        h = self.reduce(torch.relu(x))
        h = self.conv(torch.relu(h))
        return x + self.expand(torch.relu(h))


class PixelCNN(nn.Module):
    """A PixelCNN with Bernoulli pixels over flattened one-channel images ``(N, H*W)``.

    One type-A masked ``first_kernel`` convolution to ``channels`` feature maps, then
    ``num_layers`` residual layers, then ReLU, a 1x1 convolution, ReLU and a 1x1 convolution
    to one logit per pixel (the paper's two output layers). ``block`` picks the residual
    layers: ``"conv"`` (default) adds a type-B 3x3 masked convolution of ``relu(h)`` to ``h``;
    ``"bottleneck"`` is the block of van den Oord et al. (2016, Figure 5,
    :class:`ResidualBlock`) with ``hidden`` feature maps inside (default ``channels // 2``,
    the paper's ``h`` of ``2h``). ``first_kernel`` defaults to 5 for images up to 8x8 and 7
    above. The paper's binarized-MNIST model is ``first_kernel=7, block="bottleneck",
    num_layers=15``.
    """

    def __init__(
        self,
        shape: Sequence[int] = (8, 8),
        channels: int = 32,
        num_layers: int = 4,
        first_kernel: int | None = None,
        block: str = "conv",
        hidden: int | None = None,
    ):
        super().__init__()
        if len(shape) != 2 or min(shape) <= 0:
            raise ValueError(f"shape must be (H, W) with positive sides, got {tuple(shape)}")
        if channels <= 0 or num_layers < 0:
            raise ValueError(f"channels must be positive and num_layers >= 0, got {channels}, {num_layers}")
        if block not in PIXELCNN_BLOCKS:
            raise ValueError(f"block must be one of {PIXELCNN_BLOCKS}, got {block!r}")
        if hidden is not None and (block != "bottleneck" or hidden <= 0):
            raise ValueError(f"hidden goes with block='bottleneck' and must be positive, got {hidden}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.input_dim = self.shape[0] * self.shape[1]
        k = first_kernel or (5 if max(self.shape) <= 8 else 7)
        self.config = dict(shape=list(self.shape), channels=channels, num_layers=num_layers, first_kernel=k)
        self.first = MaskedConv2d(1, channels, k, "A")
        if block == "conv":  # the module names of the original small model: its checkpoints load
            self.layers = nn.ModuleList(MaskedConv2d(channels, channels, 3, "B") for _ in range(num_layers))
        else:
            width = hidden or max(1, channels // 2)
            self.config.update(block=block, hidden=width)
            self.layers = nn.ModuleList(ResidualBlock(channels, width) for _ in range(num_layers))
        self.block = block
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, 1, 1)
        )

    def _logit_map(self, img: torch.Tensor) -> torch.Tensor:
        """Return logits ``(N, 1, h, W)`` for images ``(N, 1, h, W)`` (any number of rows ``h``)."""
        h = self.first(2.0 * img - 1.0)
        for layer in self.layers:
            h = h + layer(torch.relu(h)) if self.block == "conv" else layer(h)
        return self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return per-pixel Bernoulli logits ``(N, H*W)``; logit ``i`` depends on pixels ``< i`` only."""
        return self._logit_map(x.reshape(-1, 1, *self.shape)).reshape(x.shape[0], -1)

    def conditional(self, x: torch.Tensor) -> dist.TorchDistribution:
        """Return ``prod_i p(x_i | x_<i)`` with the prefixes of ``x``; ``log_prob(x)`` is exact."""
        return dist.Bernoulli(logits=self(x), validate_args=False).to_event(1)

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` when ``x`` is not ``(N, H*W)`` with values in [0, 1]."""
        if x.dim() != 2 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"{name} must have shape (N, {self.input_dim}) ({self.shape[0]}x{self.shape[1]} images, "
                f"flattened) for this PixelCNN, got {tuple(x.shape)}"
            )
        check_unit_interval(x, name)

    def model(self, x: torch.Tensor) -> None:
        """Observe ``x`` under the exact autoregressive density (no latent variables)."""
        with data_plate(x):
            pyro.sample("x", self.conditional(x), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        """No latent variables: the empty guide makes the ELBO the exact log-likelihood."""

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact log-likelihood of each row of ``x``, ``(N,)`` in nats."""
        return self.conditional(x).log_prob(x)

    def init_output_bias(self, data_mean: torch.Tensor) -> None:
        """Set the output bias to the logit of the mean pixel intensity (one shared bias)."""
        set_output_bias(self.head[-1].bias, data_mean, link="logit", shared=True)

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Return ``(num_samples, H*W)`` binary images drawn pixel by pixel in raster order.

        A pixel in row ``r`` depends on rows ``<= r`` only, so each step runs the network on
        the rows drawn so far (half the work of full-image passes on average).
        """
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        height, width = self.shape
        img = torch.zeros(num_samples, 1, height, width)
        for r in range(height):
            for c in range(width):
                logits = self._logit_map(img[:, :, : r + 1])[:, 0, r, c]
                img[:, 0, r, c] = torch.bernoulli(torch.sigmoid(logits))
        return img.reshape(num_samples, -1)


@torch.no_grad()
def exact_log_likelihood(model: nn.Module, data: torch.Tensor, batch_size: int = 1024) -> dict[str, float]:
    """Return the exact test log-likelihood of an autoregressive model.

    ``log_likelihood`` (mean, nats per data point) and ``bits_per_dim``
    (``-log_likelihood / (D ln 2)``), with ``num_points``.
    """
    was = model.training
    model.eval()
    total = 0.0
    for start in range(0, data.shape[0], batch_size):
        total += float(model.log_prob(data[start : start + batch_size]).double().sum())
    model.train(was)
    ll = total / data.shape[0]
    return {
        "log_likelihood": ll,
        "bits_per_dim": -ll / (data.shape[1] * math.log(2)),
        "num_points": data.shape[0],
    }
