"""A VAE whose decoder is autoregressive: the model where plain ELBO training lets the posterior collapse.

Model:  z_n ~ N(0, I),  x_n ~ prod_d Bernoulli(x_nd | f_d(x_n,<d, z_n))
Guide:  q(z_n | x_n) = N(mu(x_n), diag sigma(x_n)^2)

The decoder ``f`` is a MADE (Germain et al. 2015) conditioned on ``z``
(:class:`ConditionalMADE`): masked layers over ``x`` (the masks of
:mod:`pyro_gen.models.autoregressive`, so output ``d`` sees only ``x_<d``) plus an unmasked
linear map of ``z`` into every hidden layer and into the output logits. Such a decoder can
model the data without ``z``; the ELBO's KL term then pushes q(z | x) onto the prior, every
latent dimension collapses and the VAE becomes a plain MADE (Bowman et al. 2016; Chen et
al. 2017, "Variational lossy autoencoder"). With ``context_dim = 0`` contributions the
decoder is an ordinary MADE.

``log_prob`` is not available in closed form (it integrates over ``z``): the importance-
sampled estimate of :func:`pyro_gen.evaluate` applies, as for any VAE.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ..data.checks import check_unit_interval
from .autoregressive import MaskedLinear, made_degrees
from .base import data_plate
from .nets import ACTIVATIONS, GaussianEncoder, set_output_bias


class ConditionalMADE(nn.Module):
    """MADE logits over ``x`` ``(N, input_dim)`` conditioned on a context ``z`` ``(N, context_dim)``.

    Hidden layer ``l``: ``h_l = act(M_l(h_{l-1}) + C_l z)`` with ``M_l`` masked (degrees of
    :func:`~pyro_gen.models.autoregressive.made_degrees`, natural order, ``cycle``) and ``C_l``
    dense; logits ``M_out(h_L) + C_out z`` plus, with ``direct``, a masked linear map of
    ``x`` (output ``d`` sees ``x_<d`` only). Logit ``d`` never depends on ``x_>=d``.
    """

    def __init__(
        self,
        input_dim: int,
        context_dim: int,
        hidden: Sequence[int] = (256,),
        activation: str = "relu",
        direct: bool = True,
    ):
        super().__init__()
        if input_dim <= 1 or context_dim <= 0:
            raise ValueError(
                f"input_dim must be > 1 and context_dim positive, got {input_dim}, {context_dim}"
            )
        if not hidden or any(int(h) <= 0 for h in hidden):
            raise ValueError(f"hidden must be one or more positive widths, got {list(hidden)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        order = torch.arange(input_dim)
        degs = made_degrees(input_dim, [int(h) for h in hidden], order)
        self.masked = nn.ModuleList(
            MaskedLinear(len(a), len(b), b[:, None] >= a[None, :]) for a, b in zip(degs[:-1], degs[1:])
        )
        out_deg = order + 1
        self.out = MaskedLinear(len(degs[-1]), input_dim, out_deg[:, None] > degs[-1][None, :])
        self.context = nn.ModuleList(nn.Linear(context_dim, int(w)) for w in [*hidden, input_dim])
        self.direct = (
            MaskedLinear(input_dim, input_dim, out_deg[:, None] > out_deg[None, :], bias=False)
            if direct
            else None
        )
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Return the Bernoulli logits ``(..., input_dim)``; ``x`` and ``z`` broadcast over leading axes."""
        h = x
        for masked, ctx in zip(self.masked, self.context):
            h = self.act(masked(h) + ctx(z))
        logits = self.out(h) + self.context[-1](z)
        return logits if self.direct is None else logits + self.direct(x)


class StrongDecoderVAE(nn.Module):
    """A VAE over binary vectors ``(N, input_dim)`` with a :class:`ConditionalMADE` decoder.

    ``hidden``: the encoder's widths; ``decoder_hidden``: the MADE's hidden widths (each
    layer also receives ``z``); ``direct``: the MADE's masked input-to-output connection.
    The pair's per-point sites are ``z`` and ``x`` inside the data plate.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 16,
        hidden: Sequence[int] = (256,),
        decoder_hidden: Sequence[int] = (256,),
        activation: str = "relu",
        direct: bool = True,
    ):
        super().__init__()
        if latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        self.input_dim, self.latent_dim = int(input_dim), int(latent_dim)
        self.config = dict(
            input_dim=input_dim,
            latent_dim=latent_dim,
            hidden=list(hidden),
            decoder_hidden=list(decoder_hidden),
            activation=activation,
            direct=direct,
        )
        self.encoder = GaussianEncoder(input_dim, list(hidden), latent_dim, activation)
        self.decoder = ConditionalMADE(input_dim, latent_dim, decoder_hidden, activation, direct)
        self.register_buffer("prior_loc", torch.zeros(latent_dim))
        self.register_buffer("prior_scale", torch.ones(latent_dim))

    @property
    def latent_sites(self) -> list[str]:
        """Return the latent sites' names (``["z"]``)."""
        return ["z"]

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` when ``x`` is not ``(N, input_dim)`` with values in [0, 1]."""
        if x.dim() != 2 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"{name} must have shape (N, {self.input_dim}) for this VAE, got {tuple(x.shape)}"
            )
        check_unit_interval(x, name)

    def prior(self) -> dist.TorchDistribution:
        """Return the standard normal prior p(z), event shape ``(latent_dim,)``."""
        return dist.Normal(self.prior_loc, self.prior_scale).to_event(1)

    def likelihood_dist(self, x: torch.Tensor, z: torch.Tensor) -> dist.TorchDistribution:
        """Return ``prod_d p(x_d | x_<d, z)`` evaluated with the prefixes of ``x``, event shape ``(D,)``."""
        # validate_args off: grey levels are scored as soft labels (check_data enforces [0, 1])
        return dist.Bernoulli(logits=self.decoder(x, z), validate_args=False).to_event(1)

    def model(self, x: torch.Tensor) -> None:
        """Generative model p(x, z) for a (mini)batch ``(B, input_dim)``."""
        with data_plate(x):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood_dist(x, z), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        """Amortized guide q(z | x): a diagonal Gaussian from one encoder pass."""
        with data_plate(x):
            loc, scale = self.encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def init_output_bias(self, data_mean: torch.Tensor) -> None:
        """Start the decoder's logits at the marginal pixel frequencies (logits of ``data_mean``)."""
        set_output_bias(self.decoder.out.bias, data_mean, link="logit")

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the guide's ``(loc, scale)``, each ``(N, latent_dim)``."""
        return self.encoder(x)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Return one binary draw ``(N, input_dim)`` of x given codes ``z`` (``D`` decoder passes)."""
        x = torch.zeros(z.shape[0], self.input_dim, device=z.device)
        for d in range(self.input_dim):
            x[:, d] = torch.bernoulli(torch.sigmoid(self.decoder(x, z)[:, d]))
        return x

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Return ``(num_samples, input_dim)`` binary draws: z from the prior, then x ancestrally."""
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        return self.decode(self.prior().sample((num_samples,)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Return a draw of x decoded from the encoder's mean code of each row of ``x``."""
        return self.decode(self.encode(x)[0])
