"""Generative adversarial networks as implicit Pyro models.

A GAN gives up on writing down ``p(x)``; it only learns to sample from it. Here the generator
is still a probabilistic program::

    with pyro.plate("data", N):
        z = pyro.sample("z", Normal(0, I))          # latent noise, log-density known
        x = pyro.deterministic("x", G(z))           # pushed through the generator

so ``poutine.trace`` records both sites, ``pyro.condition(gan.model, data={"z": z})`` fixes the
noise, and ``pyro.infer.Predictive(gan.model, num_samples=...)`` draws samples. What it does not
have is a likelihood for ``x``: ``x`` is a deterministic site, so conditioning on data is
meaningless and the model is trained adversarially (:mod:`pyro_gen.inference.adversarial`)
against a ``discriminator`` (a critic network returning one unnormalized score, a logit, per
input).

Networks: :func:`mlp_generator` / :func:`mlp_discriminator` for 2-D and tabular data,
:class:`ConvGenerator` / :class:`ConvDiscriminator` for 8x8 and 28x28 single-channel images and
:class:`DCGANGenerator` / :class:`DCGANCritic` (Radford et al. 2016, the four-layer networks
PacGAN used on stacked MNIST) for images of any number of channels, shape ``(C, H, W)``.
``pack`` (PacGAN, Lin et al. 2018) makes the discriminator judge ``pack`` samples jointly: its
input is ``pack`` data points concatenated (MLP) or stacked on the channel axis (conv).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .base import data_plate

#: the network choices of :meth:`GAN.for_data`
ARCHS = ("auto", "mlp", "mlp-shared", "conv", "dcgan")


def _check_positive(value: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _mlp(in_dim: int, hidden: Sequence[int], out_dim: int, slope: float | None) -> nn.Sequential:
    act = (lambda: nn.LeakyReLU(slope)) if slope is not None else nn.ReLU
    layers: list[nn.Module] = []
    widths = [in_dim, *hidden]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), act()]
    layers.append(nn.Linear(widths[-1], out_dim))
    return nn.Sequential(*layers)


def mlp_generator(
    latent_dim: int, data_dim: int, hidden: Sequence[int] = (128, 128, 128), output: str = "identity"
) -> nn.Module:
    """Return an MLP ``z (.., latent_dim) -> x (.., data_dim)`` with ReLU hidden layers.

    ``output`` is ``"identity"`` (unbounded data such as the 2-D mixtures) or ``"sigmoid"``
    (pixel intensities in [0, 1]).
    """
    _check_positive(latent_dim, "latent_dim")
    _check_positive(data_dim, "data_dim")
    if output not in ("identity", "sigmoid"):
        raise ValueError(f"output must be 'identity' or 'sigmoid', got {output!r}")
    net = _mlp(latent_dim, list(hidden), data_dim, slope=None)
    return nn.Sequential(net, nn.Sigmoid()) if output == "sigmoid" else net


def mlp_discriminator(data_dim: int, hidden: Sequence[int] = (128, 128, 128), pack: int = 1) -> nn.Module:
    """Return an MLP critic ``(.., pack * data_dim) -> (.., 1)`` logit with LeakyReLU(0.2) layers."""
    _check_positive(data_dim, "data_dim")
    _check_positive(pack, "pack")
    return _mlp(pack * data_dim, list(hidden), 1, slope=0.2)


class SharedPackCritic(nn.Module):
    """A PacGAN critic that reads each packed sample through one shared trunk first.

    ``(B, pack * data_dim) -> (B, 1)``: every one of the ``pack`` samples of a packed input goes
    through the same MLP trunk (``hidden[:-1]``, LeakyReLU 0.2), the ``pack`` trunk outputs are
    concatenated and a head (one hidden layer of ``hidden[-1]`` units) gives the logit (with a
    single width the trunk is that one layer and the head linear). The
    trunk sees single samples, as an unpacked critic does, so its resolution within a mode is
    that of one sample; the head still judges the pack jointly (mode balance).
    """

    def __init__(self, data_dim: int, hidden: Sequence[int] = (128, 128, 128), pack: int = 2):
        super().__init__()
        _check_positive(data_dim, "data_dim")
        self.pack = _check_positive(pack, "pack")
        hidden = [_check_positive(h, "hidden width") for h in hidden]
        if not hidden:
            raise ValueError("a shared-trunk critic needs at least one hidden width, got none")
        trunk_widths, head_widths = (hidden[:-1], hidden[-1:]) if len(hidden) > 1 else (hidden, [])
        self.data_dim = data_dim
        trunk: list[nn.Module] = []
        for a, b in zip([data_dim, *trunk_widths[:-1]], trunk_widths):
            trunk += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.trunk = nn.Sequential(*trunk)
        self.head = _mlp(pack * trunk_widths[-1], head_widths, 1, slope=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return one logit per packed input, shape ``(.., 1)``."""
        lead = x.shape[:-1]
        h = self.trunk(x.reshape(*lead, self.pack, self.data_dim))
        return self.head(h.reshape(*lead, -1))


def _conv_plan(side: int) -> tuple[int, int]:
    """Return (start side, number of x2 upsamplings) for 8x8 (2 -> 8) and 28x28 (7 -> 28) images."""
    if side == 8:
        return 2, 2
    if side == 28:
        return 7, 2
    raise ValueError(f"the convolutional GAN supports 8x8 and 28x28 images, got side {side}")


class ConvGenerator(nn.Module):
    """DCGAN-style generator ``z (B, latent_dim) -> images (B, side*side)`` in [0, 1] (flattened).

    A linear layer makes a ``(2 * width, s, s)`` map (``s`` = 2 for 8x8, 7 for 28x28), two
    stride-2 transposed convolutions double it twice, a sigmoid gives pixel intensities.
    """

    def __init__(self, latent_dim: int, side: int, width: int = 32):
        super().__init__()
        _check_positive(latent_dim, "latent_dim")
        _check_positive(width, "width")
        start, _ = _conv_plan(side)
        self.side, self.start, self.width = side, start, width
        self.fc = nn.Sequential(nn.Linear(latent_dim, 2 * width * start * start), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return flattened images ``(B, side*side)`` with intensities in [0, 1]."""
        h = self.fc(z).reshape(-1, 2 * self.width, self.start, self.start)
        return self.deconv(h).reshape(*z.shape[:-1], self.side * self.side)


class ConvDiscriminator(nn.Module):
    """Convolutional critic: flattened images ``(B, pack * side*side)`` -> logits ``(B, 1)``.

    The ``pack`` images of one packed input are stacked as channels (PacGAN's recipe for
    convolutional discriminators); two stride-2 convolutions with LeakyReLU(0.2), then linear.
    """

    def __init__(self, side: int, width: int = 32, pack: int = 1):
        super().__init__()
        _check_positive(width, "width")
        _check_positive(pack, "pack")
        start, _ = _conv_plan(side)
        self.side, self.pack = side, pack
        self.net = nn.Sequential(
            nn.Conv2d(pack, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * width * start * start, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return one logit per packed input, shape ``(B, 1)``."""
        return self.net(x.reshape(-1, self.pack, self.side, self.side))


def dcgan_sides(side: int, layers: int = 4) -> list[int]:
    """Return the feature-map sides of a DCGAN's stride-2 ladder, ``side`` first.

    Each of the ``layers`` steps halves the side rounding up (TensorFlow's "same" padding):
    ``dcgan_sides(28)`` is ``[28, 14, 7, 4, 2]``, ``dcgan_sides(64)`` ``[64, 32, 16, 8, 4]``.
    """
    _check_positive(side, "side")
    sides = [side]
    for _ in range(layers):
        sides.append(-(-sides[-1] // 2))
    if sides[-1] < 1 or len(set(sides)) != len(sides):
        raise ValueError(
            f"a {layers}-layer DCGAN needs images of side at least {2 ** (layers - 1) + 1}, got {side}"
        )
    return sides


def image_channels(shape: Sequence[int]) -> tuple[int, int, int]:
    """Return ``(channels, height, width)`` of one image of ``shape`` ``(H, W)`` or ``(C, H, W)``.

    ``ValueError`` for any other shape.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return shape
    raise ValueError(f"an image has shape (H, W) or (C, H, W), got {shape}")


class DCGANGenerator(nn.Module):
    """DCGAN generator ``z (B, latent_dim) -> images (B, channels*side*side)`` in [0, 1], flattened.

    Radford et al. (2016), as PacGAN ran it on stacked MNIST: a linear layer projects ``z`` to
    ``8 * width`` maps of side ``side / 16`` (rounded up), batch norm and ReLU; four 5x5
    stride-2 transposed convolutions halve the channels (``4w, 2w, w``) and double the side up
    to ``side`` (each but the last with batch norm and ReLU); the last gives ``channels`` maps
    through a sigmoid. The flattened output is channel-major: channel ``c`` is the block
    ``[c * side*side, (c + 1) * side*side)``.
    """

    def __init__(self, latent_dim: int, channels: int = 3, side: int = 28, width: int = 64):
        super().__init__()
        _check_positive(latent_dim, "latent_dim")
        self.channels = _check_positive(channels, "channels")
        self.width = _check_positive(width, "width")
        sides = dcgan_sides(side)
        self.side, self.start = side, sides[-1]
        self.fc = nn.Linear(latent_dim, 8 * width * self.start * self.start)
        self.fc_norm = nn.Sequential(nn.BatchNorm2d(8 * width), nn.ReLU())
        widths = [8 * width, 4 * width, 2 * width, width, channels]
        layers: list[nn.Module] = []
        for i, (small, big) in enumerate(zip(sides[:0:-1], sides[-2::-1])):
            # (small - 1) * 2 - 2 * 2 + 5 + output_padding = big
            layers.append(
                nn.ConvTranspose2d(
                    widths[i], widths[i + 1], 5, stride=2, padding=2, output_padding=big - 2 * small + 1
                )
            )
            layers += [nn.BatchNorm2d(widths[i + 1]), nn.ReLU()] if i < 3 else [nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return flattened images ``(B, channels*side*side)`` with intensities in [0, 1]."""
        h = self.fc_norm(self.fc(z).reshape(-1, 8 * self.width, self.start, self.start))
        return self.layers(h).reshape(*z.shape[:-1], self.channels * self.side * self.side)


class DCGANCritic(nn.Module):
    """DCGAN critic: flattened images ``(B, pack * channels*side*side)`` -> logits ``(B, 1)``.

    The ``pack`` images of one packed input are concatenated on the channel axis (PacGAN: a
    packed stacked-MNIST input has ``3 * pack`` channels). Four 5x5 stride-2 convolutions of
    ``width, 2w, 4w, 8w`` channels with LeakyReLU(0.2), batch norm on all but the first, then
    a linear layer to one logit (Radford et al. 2016).
    """

    def __init__(self, channels: int = 3, side: int = 28, width: int = 64, pack: int = 1):
        super().__init__()
        self.channels = _check_positive(channels, "channels")
        self.pack = _check_positive(pack, "pack")
        _check_positive(width, "width")
        sides = dcgan_sides(side)
        self.side = side
        widths = [pack * channels, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], 5, stride=2, padding=2))
            if i > 0:
                layers.append(nn.BatchNorm2d(widths[i + 1]))
            layers.append(nn.LeakyReLU(0.2))
        layers += [nn.Flatten(), nn.Linear(8 * width * sides[-1] * sides[-1], 1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return one logit per packed input, shape ``(B, 1)``."""
        return self.layers(x.reshape(-1, self.pack * self.channels, self.side, self.side))


class GAN(nn.Module):
    """An implicit generative model ``z ~ N(0, I)``, ``x = G(z)`` plus its discriminator.

    ``generator`` maps ``(.., latent_dim)`` noise to flattened data ``(.., data_dim)``;
    ``discriminator`` maps ``(B, pack * data_dim)`` packed inputs to ``(B, 1)`` logits. Build
    the usual configurations with :meth:`for_data`. ``shape`` is one data point's shape as a
    person looks at it (``(2,)``, ``(8, 8)``, ``(28, 28)``).
    """

    def __init__(
        self,
        latent_dim: int,
        data_dim: int,
        generator: nn.Module,
        discriminator: nn.Module,
        pack: int = 1,
        shape: Sequence[int] | None = None,
    ):
        super().__init__()
        self.latent_dim = _check_positive(latent_dim, "latent_dim")
        self.data_dim = _check_positive(data_dim, "data_dim")
        self.pack = _check_positive(pack, "pack")
        self.generator = generator
        self.discriminator = discriminator
        self.shape = tuple(shape) if shape is not None else (data_dim,)
        # Data standardization: the networks work on (x - loc) / scale; set by standardize().
        self.register_buffer("data_loc", torch.zeros(data_dim))
        self.register_buffer("data_scale", torch.ones(data_dim))

    def standardize(self, x: torch.Tensor) -> GAN:
        """Let the networks work in standardized coordinates of data ``x`` ``(N, data_dim)``; returns self.

        Stores per-column mean and standard deviation as buffers (saved with the state dict):
        the generator's output is mapped back by ``loc + scale * G(z)`` and the critic sees
        ``(x - loc) / scale``. Use it for unbounded data (e.g. the grid spans [-4, 4]), not for
        images whose generator ends in a sigmoid.
        """
        if x.dim() != 2 or x.shape[1] != self.data_dim:
            raise ValueError(f"standardize needs data of shape (N, {self.data_dim}), got {tuple(x.shape)}")
        self.data_loc.copy_(x.mean(0))
        self.data_scale.copy_(x.std(0).clamp_min(1e-6))
        return self

    @classmethod
    def for_data(
        cls,
        data_dim: int,
        shape: Sequence[int] | None = None,
        *,
        latent_dim: int | None = None,
        arch: str = "auto",
        hidden: Sequence[int] = (128, 128, 128),
        disc_hidden: Sequence[int] | None = None,
        width: int = 32,
        pack: int = 1,
        output: str | None = None,
    ) -> GAN:
        """Return a GAN for flattened data of ``data_dim`` dimensions.

        ``arch``: ``"mlp"``, ``"mlp-shared"`` (:class:`SharedPackCritic`), ``"conv"`` (square
        8x8 or 28x28 single-channel images only), ``"dcgan"`` (:class:`DCGANGenerator` and
        :class:`DCGANCritic`, square images ``(H, W)`` or ``(C, H, W)``) or ``"auto"`` (conv for
        8x8 and 28x28 images, dcgan for multi-channel images ``(C, H, W)``, MLP otherwise).
        ``latent_dim`` defaults to 2 for data of at most 2 dimensions and 32 otherwise.
        ``output`` defaults to ``"sigmoid"`` for images and ``"identity"`` otherwise (the DCGAN
        generator always ends in a sigmoid). ``width`` is the conv networks' base channels.
        """
        _check_positive(data_dim, "data_dim")
        shape = tuple(shape) if shape is not None else (data_dim,)
        is_image = len(shape) in (2, 3)
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(repr(a) for a in ARCHS)}, got {arch!r}")
        if arch == "auto":
            if len(shape) == 3:
                arch = "dcgan"
            else:
                arch = "conv" if is_image and shape[0] == shape[1] and shape[0] in (8, 28) else "mlp"
        latent_dim = latent_dim if latent_dim is not None else (2 if data_dim <= 2 else 32)
        output = output or ("sigmoid" if is_image else "identity")
        if arch == "dcgan":
            if not is_image:
                raise ValueError(f"arch='dcgan' needs images (H, W) or (C, H, W), got data shape {shape}")
            channels, height, width_px = image_channels(shape)
            if height != width_px or channels * height * width_px != data_dim:
                raise ValueError(
                    f"arch='dcgan' needs square images of {data_dim} values, got data shape {shape}"
                )
            gen: nn.Module = DCGANGenerator(latent_dim, channels, height, width)
            disc: nn.Module = DCGANCritic(channels, height, width, pack)
        elif arch == "conv":
            if len(shape) == 3:
                raise ValueError(
                    f"arch='conv' is for single-channel images; use arch='dcgan' for shape {shape}"
                )
            if not (is_image and shape[0] == shape[1]):
                raise ValueError(f"arch='conv' needs square images, got data shape {shape}")
            gen = ConvGenerator(latent_dim, shape[0], width)
            disc = ConvDiscriminator(shape[0], width, pack)
        elif arch == "mlp-shared":
            gen = mlp_generator(latent_dim, data_dim, hidden, output)
            disc = SharedPackCritic(data_dim, disc_hidden if disc_hidden is not None else hidden, pack)
        else:
            gen = mlp_generator(latent_dim, data_dim, hidden, output)
            disc = mlp_discriminator(data_dim, disc_hidden if disc_hidden is not None else hidden, pack)
        return cls(latent_dim, data_dim, gen, disc, pack=pack, shape=shape)

    def model(self, x: torch.Tensor | None = None, num_samples: int | None = None) -> torch.Tensor:
        """The generator as a Pyro program; returns the generated points ``(N, data_dim)``.

        With data ``x`` the plate is :func:`~pyro_gen.models.base.data_plate` over its rows
        (``x`` itself is not observed: the model has no likelihood); otherwise it draws
        ``num_samples`` points. Sites: ``"z"`` (latent, ``(N, latent_dim)``) and ``"x"``
        (deterministic).
        """
        if x is not None:
            plate = data_plate(x)
        else:
            _check_positive(num_samples, "num_samples")
            plate = pyro.plate("data", num_samples)
        loc = torch.zeros(self.latent_dim, device=self._device())
        with plate:
            z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))
            return pyro.deterministic("x", self.generate(z), event_dim=1)

    def _device(self) -> torch.device:
        p = next(self.generator.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Return ``G(z)``: flattened data ``(N, data_dim)`` for latent codes ``(N, latent_dim)``."""
        return self.data_loc + self.data_scale * self.generator(z)

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """Return the discriminator's logits ``(B, 1)`` for already packed inputs ``(B, pack * data_dim)``."""
        loc, scale = self.data_loc.repeat(self.pack), self.data_scale.repeat(self.pack)
        return self.discriminator((x - loc) / scale)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """Return the critic's logits ``(N / pack,)`` for flattened data ``(N, data_dim)``.

        Consecutive groups of ``pack`` rows form one packed input; ``N`` must be a multiple of
        ``pack``.
        """
        return self.critic(pack_samples(x, self.pack)).squeeze(-1)

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Draw ``num_samples`` points through :meth:`model`; returns ``(num_samples, data_dim)``.

        Runs the generator in eval mode (batch-norm statistics frozen) and restores the mode.
        """
        was_training = self.training
        self.eval()
        try:
            return self.model(num_samples=num_samples).detach()
        finally:
            self.train(was_training)


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """Reshape ``(N, D)`` into ``(N / pack, pack * D)``: each row is ``pack`` consecutive samples.

    Raises ``ValueError`` when ``N`` is not a multiple of ``pack``.
    """
    if pack == 1:
        return x
    if x.shape[0] % pack != 0:
        raise ValueError(f"cannot pack {x.shape[0]} samples into groups of pack={pack}")
    return x.reshape(x.shape[0] // pack, pack * x.shape[-1])
