"""Variational autoencoder (Kingma and Welling 2014) as a Pyro model/guide pair.

Model:  z_n ~ N(0, I),  x_n ~ p(x | decoder(z_n))  (Bernoulli or diagonal Gaussian)
Guide:  q(z_n | x_n) = N(mu(x_n), diag sigma(x_n)^2)  (amortized: one encoder for all n)

With ``lower_latents`` the VAE has several stochastic layers (Burda et al. 2016, section 5):
``z_L ~ N(0, I)``, ``z_l | z_{l+1} ~ N(mu_l(z_{l+1}), diag sigma_l(z_{l+1})^2)``, ``x | z_1``,
and the guide runs the chain upwards, ``q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1})``. The
sites are then ``z1`` (data side) to ``zL`` (top); a one-layer VAE has the single site ``z``.

``arch="conv"`` replaces the data-side networks (``q(z_1 | x)`` and ``p(x | z_1)``) by a
convolutional encoder and decoder (:class:`~pyro_gen.models.nets.ConvEncoder`,
:class:`~pyro_gen.models.nets.ConvDecoder`) for images of ``image_shape``; the networks
between stochastic layers stay MLPs, so it combines with ``lower_latents``. The sites, the
likelihoods and the output-bias initialization are those of the MLP VAE.

``prior`` chooses p(z_L) (:mod:`pyro_gen.models.priors`): ``"normal"`` (N(0, I)), ``"mog"``
(a learned mixture of Gaussians), ``"vamp"`` (the VampPrior, one stochastic layer only) or
``"flow"`` (a MAF on N(0, I)); its ``log_prob`` is exact, so every estimator and the
importance-sampled evaluation use it as they use N(0, I).

Both put their per-point sites inside :func:`~pyro_gen.models.base.data_plate`, so a
training loop that subsamples gets an unbiased full-data ELBO. The networks are ordinary
``nn.Module`` children: ``fit`` trains ``vae.parameters()`` directly, which is faster than
registering every tensor with Pyro's param store on each call. To train with a hand-written
``pyro.infer.SVI`` instead, call ``pyro.module("vae", vae)`` inside the model yourself.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ..data.checks import check_unit_interval
from .base import data_plate
from .nets import ConvDecoder, ConvEncoder, GaussianEncoder, mlp, set_output_bias
from .priors import PRIORS, make_prior

LIKELIHOODS = ("bernoulli", "gaussian")
ARCHS = ("mlp", "conv")


class VAE(nn.Module):
    """A VAE over flattened data ``(N, input_dim)``.

    ``likelihood`` is ``"bernoulli"`` (data must lie in [0, 1]; grey levels are allowed, as
    is customary) or ``"gaussian"``, whose per-dimension standard deviation is fixed to
    ``gaussian_scale`` or, with ``learn_scale=True``, learned (initialised there).
    ``hidden`` are the encoder widths; the decoder mirrors them unless ``decoder_hidden``.

    ``lower_latents`` adds stochastic layers under the top one (data side first):
    ``lower_latents=(100,)`` with ``latent_dim=50`` and ``hidden=(200, 200)`` is Burda et
    al.'s two-layer model 784-200-200-100-100-100-50, where ``between_hidden=(100, 100)`` are
    the widths of every network between two stochastic layers (in both directions). The
    conditionals between layers are diagonal Gaussians (location and softplus scale).

    ``arch="conv"`` (with ``image_shape=(H, W)``, ``H * W == input_dim``) uses convolutional
    data-side networks with ``conv_channels`` feature maps (each layer halves the sides) and
    fully connected layers of widths ``hidden`` between them and the codes. ``prior`` is one
    of :data:`~pyro_gen.models.priors.PRIORS`; ``prior_components`` is K of ``mog`` and
    ``vamp``, ``prior_flow`` and ``prior_flow_depth`` the blocks of ``flow``, ``vamp_init``
    (``"data"`` or ``"random"``) and ``vamp_data`` (training points) the start of the
    VampPrior's pseudo-inputs; ``seed`` seeds the priors' initial values.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 16,
        hidden: Sequence[int] = (256,),
        decoder_hidden: Sequence[int] | None = None,
        activation: str = "relu",
        likelihood: str = "bernoulli",
        gaussian_scale: float = 0.1,
        learn_scale: bool = False,
        lower_latents: Sequence[int] = (),
        between_hidden: Sequence[int] = (100, 100),
        *,
        arch: str = "mlp",
        image_shape: Sequence[int] | None = None,
        conv_channels: Sequence[int] = (32, 64),
        prior: str = "normal",
        prior_components: int = 10,
        prior_flow: str = "maf",
        prior_flow_depth: int = 4,
        vamp_init: str = "data",
        vamp_data: torch.Tensor | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        if prior == "vamp" and lower_latents:
            raise ValueError(
                "--prior vamp needs one stochastic layer (q(z_L | u) is not Gaussian under "
                "--lower-latents); use --prior mog or flow"
            )
        if arch == "conv":
            if image_shape is None or len(tuple(image_shape)) != 2:
                raise ValueError(
                    f"--arch conv needs image data (points of shape (H, W)), got shape {image_shape}"
                )
            if int(image_shape[0]) * int(image_shape[1]) != int(input_dim):
                raise ValueError(f"image_shape {tuple(image_shape)} does not hold {input_dim} pixels")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if input_dim <= 0 or latent_dim <= 0:
            raise ValueError(f"input_dim and latent_dim must be positive, got {input_dim}, {latent_dim}")
        if gaussian_scale <= 0:
            raise ValueError(f"gaussian_scale must be positive, got {gaussian_scale}")
        lower = [int(d) for d in lower_latents]
        between = [int(w) for w in between_hidden]
        if any(d <= 0 for d in lower) or any(w <= 0 for w in between):
            raise ValueError(f"lower_latents and between_hidden must be positive, got {lower}, {between}")
        self.input_dim = int(input_dim)
        self.latent_dim = int(latent_dim)
        self.likelihood = likelihood
        #: the stochastic layers' widths, data side first; the last is ``latent_dim``
        self.latent_dims = [*lower, self.latent_dim]
        self.config = dict(
            input_dim=input_dim,
            latent_dim=latent_dim,
            hidden=list(hidden),
            decoder_hidden=None if decoder_hidden is None else list(decoder_hidden),
            activation=activation,
            likelihood=likelihood,
            gaussian_scale=gaussian_scale,
            learn_scale=learn_scale,
        )
        if lower:
            self.config.update(lower_latents=lower, between_hidden=between)
        # only when set, so that the configuration of MLP VAEs with N(0, I) is unchanged
        self.arch = arch
        if arch == "conv":
            self.config.update(arch=arch, image_shape=list(image_shape), conv_channels=list(conv_channels))
        self.prior_kind = prior
        if prior != "normal":
            self.config.update(prior=prior, seed=seed)
            if prior in ("mog", "vamp"):
                self.config["prior_components"] = prior_components
            if prior == "vamp":
                self.config["vamp_init"] = vamp_init
            if prior == "flow":
                self.config.update(prior_flow=prior_flow, prior_flow_depth=prior_flow_depth)
        dec_hidden = list(reversed(list(hidden))) if decoder_hidden is None else list(decoder_hidden)
        bottom = self.latent_dims[0]
        if arch == "conv":
            self.encoder = ConvEncoder(image_shape, bottom, conv_channels, list(hidden), activation)
            self.decoder = ConvDecoder(bottom, image_shape, conv_channels, dec_hidden, activation)
        else:
            self.encoder = GaussianEncoder(input_dim, list(hidden), bottom, activation)
            self.decoder = mlp(bottom, dec_hidden, input_dim, activation)
        if lower:
            dims = self.latent_dims
            # up[l]: q(z_{l+2} | z_{l+1}); down[l]: p(z_{l+1} | z_{l+2}) (1-based site names)
            self.up = nn.ModuleList(
                GaussianEncoder(a, between, b, activation) for a, b in zip(dims[:-1], dims[1:])
            )
            self.down = nn.ModuleList(
                GaussianEncoder(b, list(reversed(between)), a, activation)
                for a, b in zip(dims[:-1], dims[1:])
            )
        self.register_buffer("prior_loc", torch.zeros(latent_dim))
        self.register_buffer("prior_scale", torch.ones(latent_dim))
        if prior != "normal":
            self.prior_module = make_prior(
                prior,
                latent_dim,
                input_dim=input_dim,
                num_components=prior_components,
                flow=prior_flow,
                flow_depth=prior_flow_depth,
                vamp_init=vamp_init,
                data=vamp_data,
                unit_interval=likelihood == "bernoulli",
                seed=seed,
            )
        # The Gaussian likelihood's scale is a softplus-parameterised vector (learned) or a
        # constant buffer (fixed); inverse softplus so the initial scale is gaussian_scale.
        raw = torch.full((input_dim,), float(gaussian_scale)).expm1().log()
        if learn_scale:
            self.raw_scale = nn.Parameter(raw)
        else:
            self.register_buffer("raw_scale", raw)

    # ----------------------------------------------------------------- Pyro pair
    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` when ``x`` cannot be scored by this likelihood (shape, support)."""
        if x.dim() != 2 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"{name} must have shape (N, {self.input_dim}) for this VAE, got {tuple(x.shape)}"
            )
        if self.likelihood == "bernoulli":
            check_unit_interval(x, name)

    def likelihood_dist(self, z: torch.Tensor) -> dist.TorchDistribution:
        """Return p(x | z) with event shape ``(input_dim,)`` (``z``: the data-side layer's codes)."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            # validate_args off: grey levels in [0, 1] are scored as soft labels on purpose;
            # check_data enforces the [0, 1] range at the boundary.
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        scale = nn.functional.softplus(self.raw_scale)
        return dist.Normal(out, scale).to_event(1)

    def prior(self) -> dist.TorchDistribution:
        """Return the prior p(z) of the top layer with event shape ``(latent_dim,)``: N(0, I) or the
        learned prior (a mixture, the VampPrior at the current encoder, or the flow)."""
        if self.prior_kind == "normal":
            return dist.Normal(self.prior_loc, self.prior_scale).to_event(1)
        return self.prior_module.distribution(self.encoder)

    @property
    def latent_sites(self) -> list[str]:
        """Return the latent sites' names, data side first (``["z"]`` for one stochastic layer)."""
        if len(self.latent_dims) == 1:
            return ["z"]
        return [f"z{i}" for i in range(1, len(self.latent_dims) + 1)]

    def model(self, x: torch.Tensor) -> None:
        """Generative model p(x, z); ``x`` is a (mini)batch ``(B, input_dim)``."""
        sites = self.latent_sites
        with data_plate(x):
            z = pyro.sample(sites[-1], self.prior())
            for i in range(len(sites) - 2, -1, -1):  # top-down: z_{L-1} | z_L, ..., z_1 | z_2
                loc, scale = self.down[i](z)
                z = pyro.sample(sites[i], dist.Normal(loc, scale).to_event(1))
            pyro.sample("x", self.likelihood_dist(z), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        """Amortized guide q(z | x): one encoder pass for the batch (bottom-up through the layers)."""
        sites = self.latent_sites
        with data_plate(x):
            loc, scale = self.encoder(x)
            z = pyro.sample(sites[0], dist.Normal(loc, scale).to_event(1))
            for i, up in enumerate(getattr(self, "up", ())):
                loc, scale = up(z)
                z = pyro.sample(sites[i + 1], dist.Normal(loc, scale).to_event(1))

    # ----------------------------------------------------------------- utilities
    def init_output_bias(self, data_mean: torch.Tensor) -> None:
        """Set the decoder's output bias to the data mean (its logit for Bernoulli data).

        A standard trick (Burda et al. 2015) that starts training at the marginal pixel
        statistics instead of at 0.5 everywhere.
        """
        link = "logit" if self.likelihood == "bernoulli" else "identity"
        bias = self.decoder.bias if self.arch == "conv" else self.decoder[-1].bias
        set_output_bias(bias, data_mean, link=link)

    @torch.no_grad()
    def kl_to_prior(self, x: torch.Tensor, num_samples: int = 64) -> torch.Tensor:
        """Return KL(q(z | x) || p(z)) for each row of ``x``, ``(N,)`` nats (one stochastic layer).

        Closed form for the N(0, I) prior, else the Monte Carlo mean of ``log q(z | x) - log p(z)``
        over ``num_samples`` draws of the guide.
        """
        if len(self.latent_dims) != 1:
            raise ValueError("kl_to_prior needs one stochastic layer (the VAE has --lower-latents)")
        loc, scale = self.encoder(x)
        q = dist.Normal(loc, scale).to_event(1)
        p = self.prior()
        if self.prior_kind == "normal":
            return torch.distributions.kl_divergence(q, p)
        z = q.sample((num_samples,))
        return (q.log_prob(z) - p.log_prob(z)).mean(0)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the guide's ``(loc, scale)`` of the top layer for each row of ``x``, each
        ``(N, latent_dim)`` (with several stochastic layers: at the means of the layers below)."""
        loc, scale = self.encoder(x)
        for up in getattr(self, "up", ()):
            loc, scale = up(loc)
        return loc, scale

    def _bottom(self, z: torch.Tensor, mean: bool) -> torch.Tensor:
        """Return z_1 from top-layer codes ``z``: through the conditionals' means, or sampled."""
        for down in reversed(getattr(self, "down", ())):
            loc, scale = down(z)
            z = loc if mean else dist.Normal(loc, scale).sample()
        return z

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Return the mean of p(x | z) for top-layer codes ``z`` (layers below at their conditional
        means): pixel probabilities (Bernoulli) or Gaussian means."""
        out = self.decoder(self._bottom(z, mean=True))
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Return the decoded mean at the encoder's mean for each row of ``x``."""
        return self.decode(self.encode(x)[0])

    @torch.no_grad()
    def sample(self, num_samples: int, mean: bool = True) -> torch.Tensor:
        """Return ``(num_samples, input_dim)`` draws: decoded means, or observations if ``mean=False``
        (the latent layers are drawn ancestrally either way)."""
        z1 = self._bottom(self.prior().sample((num_samples,)), mean=False)
        lik = self.likelihood_dist(z1)
        if not mean:
            return lik.sample()
        return lik.base_dist.probs if self.likelihood == "bernoulli" else lik.base_dist.loc

    @torch.no_grad()
    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, steps: int = 8) -> torch.Tensor:
        """Return ``(steps, input_dim)`` decodings along the line between the codes of x0 and x1."""
        z0, z1 = self.encode(x0.reshape(1, -1))[0], self.encode(x1.reshape(1, -1))[0]
        t = torch.linspace(0, 1, steps).unsqueeze(-1)
        return self.decode((1 - t) * z0 + t * z1)
