"""Energy-based models: a density ``p(x) = exp(-E(x)) / Z`` written as a Pyro program.

The energy is a neural network on standardized coordinates ``z = (x - loc) / scale`` plus a
weak Gaussian confinement that makes every energy integrable::

    E(x) = f_theta(z) + |z|^2 / (2 tau^2),        Z = integral of exp(-E(x)) dx

so ``exp(-E)`` is the Gaussian base ``N(loc, (tau * scale)^2)`` (unnormalized) reweighted by
``exp(-f_theta)``. ``Z = Z_base * E_base[exp(-f_theta(z))]`` with
``log Z_base = D/2 log(2 pi) + D log tau + sum_d log scale_d``: the base is what annealed
importance sampling starts from and what fresh sampler chains are drawn from.

Images are modelled as dequantized grey levels ``v = (k + u) / L`` in ``[0, 1]^D`` (pixels
``x = k / (L - 1)``, ``L`` levels, ``u ~ U(0, 1)``; binarized pixels have ``L = 2``), so
``log p(v) - D log L`` is a lower bound on the log-probability of the discrete pixels, in
expectation over ``u`` (as for dequantized flows).

:meth:`EnergyModel.model` is the Pyro program (``pyro.factor("energy", -E(x))`` inside the
data plate); :meth:`EnergyModel.sampling_model` makes ``x`` a latent site with the same
factor, so Pyro's HMC and NUTS sample the model through their potential function. Training
objectives, all on standardized coordinates and selected by ``method`` (:meth:`EnergyModel.loss`):

* ``pcd``: persistent contrastive divergence with SGLD chains kept in a replay buffer
  (Du & Mordatch 2019): ``mean E(x+) - mean E(x-) + alpha (mean f(x+)^2 + mean f(x-)^2)``;
* ``dsm``: denoising score matching at one noise level ``sigma`` (Vincent 2011), weighted by
  ``sigma^2``: ``sigma^2 / 2 * |grad_z log p(z~) + (z~ - z) / sigma^2|^2``; with a
  :class:`NoiseConditionalEnergy` network, at several levels ``sigma_1 > ... > sigma_L`` (one
  drawn per point, Song & Ermon 2019), the model's density being the one at ``sigma_L`` and
  :meth:`EnergyModel.sample` annealed Langevin dynamics through the levels;
* ``ssm``: sliced score matching with variance reduction (Song et al. 2019):
  ``v^T (d s / d z) v + |s|^2 / 2`` with ``s = -grad E``, ``v ~ N(0, I)``;
* ``nce``: noise-contrastive estimation (Gutmann & Hyvarinen 2010) against a fixed fitted
  noise density ``q`` with ``nu`` noise points per data point and ``log Z`` a parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .base import data_plate

METHODS = ("pcd", "dsm", "ssm", "nce")
NETS = ("mlp", "conv")


class MLPEnergy(nn.Module):
    """An MLP ``R^D -> R`` with SiLU activations (smooth, so its input gradients are smooth)."""

    def __init__(self, dim: int, hidden: Sequence[int] = (128, 128)):
        super().__init__()
        widths = [int(dim), *[int(h) for h in hidden]]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        layers.append(nn.Linear(widths[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return the network energy ``f(z)`` per row of ``z`` ``(N, D)``, shape ``(N,)``, in nats."""
        return self.net(z).squeeze(-1)


class ConvEnergy(nn.Module):
    """A small conv net on ``(N, H * W)`` images: 3x3 convolutions (stride 2 after the first), SiLU,
    then a linear head."""

    def __init__(self, shape: Sequence[int], channels: Sequence[int] = (32, 64)):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 2:
            raise ValueError(f"a conv energy needs an image shape (H, W), got {self.shape}")
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(int(c) for c in channels):
            layers += [nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1), nn.SiLU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            n = self.features(torch.zeros(1, 1, *self.shape)).numel()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(n, 128), nn.SiLU(), nn.Linear(128, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return ``f(z)`` per flattened image ``(N, H * W)``, shape ``(N,)``, in nats."""
        return self.head(self.features(z.reshape(-1, 1, *self.shape))).squeeze(-1)


def noise_levels(sigma_max: float, sigma_min: float, num: int) -> torch.Tensor:
    """Return ``num`` noise levels ``(num,)`` decreasing geometrically from ``sigma_max`` to ``sigma_min``
    (standardized units), as Song & Ermon 2019."""
    if num < 1 or not (0 < sigma_min <= sigma_max) or not math.isfinite(sigma_max):
        raise ValueError(
            f"noise levels need num >= 1 and 0 < sigma_min <= sigma_max, got {num}, {sigma_min}, {sigma_max}"
        )
    if num == 1:
        return torch.tensor([float(sigma_min)])
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), num)


class NoiseConditionalEnergy(nn.Module):
    """A noise-conditional energy ``f(z, sigma) = g(z, log sigma) / sigma`` (Song & Ermon 2019).

    ``net`` is the network ``g``: with ``condition=True`` it reads ``log sigma`` as an extra last
    input column (an MLP of ``D + 1`` inputs), otherwise ``g(z)`` alone (a conv net), the division
    by ``sigma`` being the noise-conditional trick of Song & Ermon 2020: scores of size
    ``1 / sigma`` without large weights. ``sigmas`` (a buffer, decreasing) are the training
    levels; called without ``sigma`` the energy is the one at the smallest level, the model's
    density.
    """

    def __init__(self, net: nn.Module, sigmas: torch.Tensor, condition: bool = True):
        super().__init__()
        self.net, self.condition = net, bool(condition)
        sigmas = torch.as_tensor(sigmas, dtype=torch.float32).flatten()
        if sigmas.numel() < 1 or not bool((sigmas > 0).all()):
            raise ValueError(f"noise levels must be positive, got {sigmas.tolist()}")
        self.register_buffer("sigmas", sigmas.clone())

    def forward(self, z: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Return ``f(z, sigma)`` per row ``(N,)`` in nats; ``sigma`` a float or ``(N,)`` (default: the
        smallest level)."""
        s = self.sigmas[-1] if sigma is None else torch.as_tensor(sigma, dtype=z.dtype, device=z.device)
        s = s.to(z).expand(z.shape[0])
        g = self.net(torch.cat([z, s.log()[:, None]], -1)) if self.condition else self.net(z)
        return g / s


class MixtureNoise(nn.Module):
    """A fixed Gaussian mixture (weights, means, Cholesky factors as buffers): NCE's noise density."""

    def __init__(self, weights: torch.Tensor, locs: torch.Tensor, scale_tril: torch.Tensor):
        super().__init__()
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32).clone())
        self.register_buffer("locs", torch.as_tensor(locs, dtype=torch.float32).clone())
        self.register_buffer("scale_tril", torch.as_tensor(scale_tril, dtype=torch.float32).clone())

    @classmethod
    def placeholder(cls, num_components: int, dim: int) -> MixtureNoise:
        """Return a mixture of the right shapes (standard normals) whose buffers a checkpoint fills."""
        eye = torch.eye(dim).expand(num_components, dim, dim)
        return cls(torch.full((num_components,), 1.0 / num_components), torch.zeros(num_components, dim), eye)

    def distribution(self) -> dist.MixtureSameFamily:
        """Return the mixture as a distribution over D-vectors."""
        return dist.MixtureSameFamily(
            dist.Categorical(probs=self.weights),
            dist.MultivariateNormal(self.locs, scale_tril=self.scale_tril),
        )

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``log q(x)`` per row ``(N,)`` in nats."""
        return self.distribution().log_prob(x)

    def sample(self, num: int) -> torch.Tensor:
        """Return ``num`` draws ``(num, D)`` (global torch RNG)."""
        return self.distribution().sample((num,))


def langevin_steps(num_steps: int, step: float, step_min: float | None = None) -> torch.Tensor:
    """Return the SGLD step sizes ``(num_steps,)``: geometric from ``step`` to ``step_min`` (constant
    when None)."""
    if num_steps < 1:
        raise ValueError(f"the number of Langevin steps must be positive, got {num_steps}")
    if step_min is None or num_steps == 1:
        return torch.full((num_steps,), float(step))
    return torch.logspace(math.log10(step), math.log10(step_min), num_steps)


def sgld(
    energy: Callable[..., torch.Tensor],
    z: torch.Tensor,
    steps: torch.Tensor,
    noise: float | None = None,
    grad_clip: float | None = None,
    levels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run stochastic gradient Langevin dynamics from ``z`` ``(N, D)``; return the final states (detached).

    Step ``t``: ``z <- z - eps_t / 2 * grad E(z) + n_t * xi``, ``xi ~ N(0, I)``, with
    ``eps_t = steps[t]`` and ``n_t = sqrt(eps_t)`` (unadjusted Langevin, whose stationary
    density tends to ``exp(-E)`` as ``eps -> 0``) unless ``noise`` fixes the noise scale (the
    decoupled step of Du & Mordatch 2019). ``grad_clip`` clips each row's gradient norm.
    Gradients are taken with respect to ``z`` only; the energy's parameters get none. With
    ``levels`` (one noise level per step, ``(num_steps,)``) step ``t`` follows
    ``energy(z, levels[t])``: annealed Langevin dynamics (Song & Ermon 2019).
    """
    z = z.detach()
    sigmas = [None] * len(steps) if levels is None else levels.tolist()
    if len(sigmas) != len(steps):
        raise ValueError(f"levels must give one noise level per step, got {len(sigmas)} for {len(steps)}")
    for eps, sig in zip(steps.tolist(), sigmas):
        z.requires_grad_(True)
        with torch.enable_grad():
            e = energy(z) if sig is None else energy(z, sig)
            (g,) = torch.autograd.grad(e.sum(), z)
        if grad_clip is not None:
            norm = g.flatten(1).norm(dim=1).clamp_min(1e-12)
            g = g * (grad_clip / norm).clamp(max=1.0).reshape(-1, *([1] * (g.dim() - 1)))
        n = math.sqrt(eps) if noise is None else noise
        z = (z.detach() - 0.5 * eps * g + n * torch.randn_like(z)).detach()
    return z


class EnergyModel(nn.Module):
    """An energy-based density over ``(N, D)`` data (see the module docstring).

    ``net`` maps standardized points to energies (:class:`MLPEnergy`, :class:`ConvEnergy`);
    ``loc``/``scale`` standardize (per dimension for vectors, one scalar for images);
    ``tau`` is the width of the Gaussian confinement in standardized units; ``num_levels``
    the grey levels of image data (None for continuous data). ``method`` picks the training
    objective of :meth:`loss`; the other arguments are its settings (``pcd``: ``buffer_size``,
    ``reinit``, ``sgld_steps``, ``sgld_step`` (decaying geometrically to ``sgld_step_min`` within
    each training step when given), ``sgld_noise``, ``alpha``; ``dsm``: ``sigma``;
    ``ssm``: ``projections``; ``nce``: ``noise`` (a module with ``log_prob``/``sample``) and
    ``noise_ratio``). ``sample_steps``/``sample_step``/``sample_step_min`` set :meth:`sample`.
    Learned state: ``replay`` (the PCD buffer, standardized), ``nce_log_z`` (NCE's log Z,
    nats), ``log_z`` (the log normalizer last computed by an evaluation; 0 until then).
    ``dim`` is the data dimension D (needed when ``loc`` and ``scale`` are scalars).
    """

    def __init__(
        self,
        net: nn.Module,
        loc: torch.Tensor,
        scale: torch.Tensor,
        *,
        method: str = "pcd",
        tau: float = 2.0,
        num_levels: int | None = None,
        buffer_size: int = 10000,
        reinit: float = 0.05,
        sgld_steps: int = 20,
        sgld_step: float = 0.01,
        sgld_noise: float | None = None,
        sgld_step_min: float | None = None,
        alpha: float = 0.1,
        sigma: float = 0.1,
        projections: int = 1,
        noise: nn.Module | None = None,
        noise_ratio: int = 4,
        sample_steps: int = 500,
        sample_step: float = 0.01,
        sample_step_min: float | None = 1e-4,
        seed: int = 0,
        dim: int | None = None,
    ):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if method == "nce" and noise is None:
            raise ValueError("method 'nce' needs a noise distribution")
        if not tau > 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.net = net
        sigmas = getattr(net, "sigmas", None)
        self.sigmas: torch.Tensor | None = sigmas if isinstance(sigmas, torch.Tensor) else None
        if self.sigmas is not None and method != "dsm":
            raise ValueError(f"a noise-conditional energy trains with method 'dsm', not {method!r}")
        loc, scale = torch.as_tensor(loc, dtype=torch.float32), torch.as_tensor(scale, dtype=torch.float32)
        self.dim = int(dim) if dim is not None else max(int(loc.numel()), int(scale.numel()))
        self.register_buffer("loc", loc.clone())
        self.register_buffer("scale", scale.clone())
        self.method, self.tau, self.num_levels = method, float(tau), num_levels
        self.reinit, self.sgld_steps, self.sgld_step = float(reinit), int(sgld_steps), float(sgld_step)
        self.sgld_noise, self.alpha, self.sigma = sgld_noise, float(alpha), float(sigma)
        self.sgld_step_min = sgld_step_min
        self.projections, self.noise_ratio = int(projections), int(noise_ratio)
        self.sample_steps, self.sample_step, self.sample_step_min = (
            int(sample_steps),
            float(sample_step),
            sample_step_min,
        )
        self.noise = noise
        if noise is not None:
            noise.requires_grad_(False)
        gen = torch.Generator().manual_seed(int(seed))
        self.register_buffer("replay", self.base_draw(buffer_size if method == "pcd" else 0, gen))
        self.nce_log_z = nn.Parameter(torch.tensor(0.0))
        self.register_buffer("log_z", torch.tensor(0.0, dtype=torch.float64))
        self.log_z_method: str | None = None

    # ------------------------------------------------------------------ coordinates
    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``z = (x - loc) / scale``."""
        return (x - self.loc) / self.scale

    def unstandardize(self, z: torch.Tensor) -> torch.Tensor:
        """Return ``x = loc + scale * z``."""
        return self.loc + self.scale * z

    def log_scale_sum(self) -> float:
        """Return ``sum_d log scale_d`` (the log-Jacobian from ``z`` to ``x``), nats."""
        return float(torch.log(self.scale.double()).expand(self.dim).sum())

    def base_log_normalizer(self) -> float:
        """Return ``log Z_base`` of the Gaussian confinement in data coordinates, nats."""
        return 0.5 * self.dim * math.log(2 * math.pi) + self.dim * math.log(self.tau) + self.log_scale_sum()

    def base_draw(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``num`` standardized draws ``(num, D)`` of the base ``N(0, tau^2 I)``."""
        return self.tau * torch.randn(num, self.dim, generator=generator)

    # ------------------------------------------------------------------ energies
    def energy_z(self, z: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Return ``E = f(z) + |z|^2 / (2 tau^2)`` at standardized points ``z`` ``(N, D)``: ``(N,)``, nats.

        ``sigma`` (a noise-conditional network only) picks the noise level; default the model's.
        """
        f = self.net(z) if sigma is None else self.net(z, sigma)
        return f + 0.5 * z.pow(2).sum(-1) / self.tau**2

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``E(x)`` per row of ``x`` (data coordinates; images: dequantized values), ``(N,)``, nats."""
        return self.energy_z(self.standardize(x))

    def dequantize(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(k + u) / L`` for pixels ``x = k / (L - 1)`` (global RNG); ``x`` itself for vectors."""
        if self.num_levels is None:
            return x
        levels = torch.round(x * (self.num_levels - 1))
        return (levels + torch.rand_like(x)) / self.num_levels

    def quantize(self, v: torch.Tensor) -> torch.Tensor:
        """Return pixels ``floor(L v) / (L - 1)`` of continuous values ``v``; ``v`` itself for vectors."""
        if self.num_levels is None:
            return v
        k = torch.floor(v * self.num_levels).clamp(0, self.num_levels - 1)
        return k / (self.num_levels - 1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``-E(x) - log_z`` per row ``(N,)`` in nats: the log-density once ``log_z`` is set
        (by quadrature or AIS in an evaluation; before, ``log_z`` is 0 and this is ``-E(x)``). For images, of
        the dequantized values ``x``."""
        return -self.energy(x) - self.log_z.to(x.dtype)

    def set_log_normalizer(self, log_z: float, method: str) -> None:
        """Store ``log Z`` (nats) and how it was computed (``"quadrature"``, ``"ais"``, ``"nce"``)."""
        self.log_z.fill_(float(log_z))
        self.log_z_method = method

    # ------------------------------------------------------------------ Pyro programs
    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` unless ``x`` is ``(N, D)`` with this model's D and finite values."""
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"{name} must have shape (N, {self.dim}), got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} holds NaN or infinite values")

    def model(self, x: torch.Tensor) -> None:
        """The Pyro program: ``pyro.factor("energy", -E(x))`` per data point, inside the data plate."""
        with data_plate(x):
            pyro.factor("energy", -self.energy(x))

    def sampling_model(self, num: int) -> torch.Tensor:
        """The EBM as a Pyro program over ``num`` latent points (site ``"x"``, ``(num, D)``): the base
        ``N(loc, (tau * scale)^2)`` as prior and the factor ``-f((x - loc) / scale)``, so that the
        posterior is ``exp(-E(x)) / Z``; returns ``x``. HMC and NUTS sample it (``inference.ebm``)."""
        base = dist.Normal(self.loc.expand(self.dim), (self.tau * self.scale).expand(self.dim)).to_event(1)
        with pyro.plate("points", num):
            x = pyro.sample("x", base)
            pyro.factor("energy", -self.net(self.standardize(x)))
        return x

    # ------------------------------------------------------------------ training objectives
    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Return the training loss of the batch ``x`` for ``method`` (mean per data point; module docstring).

        Image pixels are dequantized first. In eval mode (held-out loss) PCD scores the data
        against the buffer as it is (no chains run, the buffer is not written).
        """
        z = self.standardize(self.dequantize(x))
        return {"pcd": self.pcd_loss, "dsm": self.dsm_loss, "ssm": self.ssm_loss, "nce": self.nce_loss}[
            self.method
        ](z)

    def pcd_loss(self, z: torch.Tensor) -> torch.Tensor:
        """Return the PCD loss of standardized data ``z``; in train mode, run and store the chains."""
        n = z.shape[0]
        if self.training:
            idx = torch.randint(0, self.replay.shape[0], (n,), device=z.device)
            start = self.replay[idx]
            fresh = torch.rand(n, device=z.device) < self.reinit
            start = torch.where(fresh[:, None], self.tau * torch.randn_like(start), start)
            steps = langevin_steps(self.sgld_steps, self.sgld_step, self.sgld_step_min)
            neg = sgld(self.energy_z, start, steps, self.sgld_noise, grad_clip=None)
            self.replay[idx] = neg
        else:
            neg = self.replay[: min(n, self.replay.shape[0])]
        f_pos, f_neg = self.net(z), self.net(neg)
        e_pos = f_pos + 0.5 * z.pow(2).sum(-1) / self.tau**2
        e_neg = f_neg + 0.5 * neg.pow(2).sum(-1) / self.tau**2
        return e_pos.mean() - e_neg.mean() + self.alpha * (f_pos.pow(2).mean() + f_neg.pow(2).mean())

    def score_z(
        self, z: torch.Tensor, create_graph: bool = True, sigma: torch.Tensor | float | None = None
    ) -> torch.Tensor:
        """Return the model score ``-grad_z E(z)`` ``(N, D)`` (differentiable in the parameters); ``sigma``
        the noise level of a noise-conditional network (default the model's)."""
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.requires_grad_(True)
            (g,) = torch.autograd.grad(self.energy_z(z, sigma).sum(), z, create_graph=create_graph)
        return -g

    def dsm_loss(self, z: torch.Tensor) -> torch.Tensor:
        """Return the denoising score-matching loss (Vincent 2011) at noise ``sigma``, times ``sigma^2``.

        With a noise-conditional network each point gets a level drawn uniformly from its
        ``sigmas`` and the loss is ``sigma_i^2 / 2 |s(z~, sigma_i) + (z~ - z) / sigma_i^2|^2``
        averaged over points (Song & Ermon 2019, weighting ``lambda(sigma) = sigma^2``).
        """
        eps = torch.randn_like(z)
        create = self.training or torch.is_grad_enabled()
        if self.sigmas is None:
            noisy = (z + self.sigma * eps).detach()
            s = self.score_z(noisy, create_graph=create)
            return 0.5 * (self.sigma * s + eps).pow(2).sum(-1).mean()
        sig = self.sigmas.to(z)[torch.randint(0, self.sigmas.numel(), (z.shape[0],), device=z.device)]
        noisy = (z + sig[:, None] * eps).detach()
        s = self.score_z(noisy, create_graph=create, sigma=sig)
        return 0.5 * (sig[:, None] * s + eps).pow(2).sum(-1).mean()

    def ssm_loss(self, z: torch.Tensor) -> torch.Tensor:
        """Return sliced score matching with variance reduction (Song et al. 2019), ``projections`` slices."""
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            s = self.score_z(z, create_graph=True)
            total = 0.5 * s.pow(2).sum(-1)
            for _ in range(self.projections):
                v = torch.randn_like(z)
                (gv,) = torch.autograd.grad((s * v).sum(), z, create_graph=True)
                total = total + (gv * v).sum(-1) / self.projections
        return total.mean()

    def nce_loss(self, z: torch.Tensor) -> torch.Tensor:
        """Return the NCE loss (Gutmann & Hyvarinen 2010) with ``noise_ratio`` noise points per data point.

        ``G(x) = log p_theta(x) - log q(x) - log nu`` with ``log p_theta = -E(x) - c``, ``c`` the
        parameter ``nce_log_z``; the loss is ``-mean log sigmoid(G(x+)) - nu mean log sigmoid(-G(y))``.
        """
        nu = self.noise_ratio
        x = self.unstandardize(z)
        y = self.noise.sample(z.shape[0] * nu).to(z)

        def logit(points: torch.Tensor) -> torch.Tensor:
            return -self.energy(points) - self.nce_log_z - self.noise.log_prob(points) - math.log(nu)

        pos = nn.functional.logsigmoid(logit(x)).mean()
        neg = nn.functional.logsigmoid(-logit(y)).mean()
        return -(pos + nu * neg)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        num: int,
        steps: int | None = None,
        step: float | None = None,
        step_min: float | None = -1.0,
        init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return ``num`` SGLD samples ``(num, D)`` in data coordinates (images: pixels of the data's levels).

        Chains start from the base ``N(loc, (tau * scale)^2)`` (or from standardized ``init``)
        and run ``steps`` (default ``sample_steps``) Langevin steps whose size decays
        geometrically from ``step`` (default ``sample_step``) to ``step_min`` (default
        ``sample_step_min``; None keeps it constant), in standardized units. A noise-conditional
        energy is annealed (Song & Ermon 2019): the steps are split into equal blocks, one per
        noise level from the largest to the smallest, each following the energy at its level
        (the schedule's step sizes shrink with the levels). Global torch RNG.
        """
        if num < 1:
            raise ValueError(f"the number of samples must be positive, got {num}")
        steps = self.sample_steps if steps is None else int(steps)
        step = self.sample_step if step is None else float(step)
        step_min = self.sample_step_min if step_min == -1.0 else step_min
        dev = self.loc.device
        z0 = self.base_draw(num).to(dev) if init is None else init.to(dev)
        schedule = langevin_steps(steps, step, step_min).to(dev)
        levels = None
        if self.sigmas is not None:
            block = (torch.arange(steps, device=dev) * self.sigmas.numel()) // steps
            levels = self.sigmas.to(dev)[block]
        z = sgld(self.energy_z, z0, schedule, levels=levels)
        return self.quantize(self.unstandardize(z))

    def num_parameters(self) -> int:
        """Return the number of trained parameters of the energy network (NCE's log Z included)."""
        return sum(p.numel() for p in self.net.parameters()) + 1

    def describe(self) -> dict[str, Any]:
        """Return the model's settings that metrics record: method, tau, levels, parameters."""
        return {
            "method": self.method,
            "tau": self.tau,
            "num_levels": self.num_levels,
            "num_parameters": self.num_parameters(),
        }
