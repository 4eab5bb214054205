"""Normalizing flows built from Pyro's transforms (or zuko's): exact densities and samplers.

A flow writes a data point as ``x = T(z)`` with ``z ~ N(0, I)`` and an invertible ``T``, so

    log p(x) = log N(T^{-1}(x); 0, I) + log |det d T^{-1}(x) / dx|     (nats)

is exact. :class:`FlowDensity` is a Pyro model with no latent variables: ``model(x)``
observes the batch under a ``pyro.distributions.TransformedDistribution`` inside
:func:`~pyro_gen.models.base.data_plate`, so maximum-likelihood training is the ordinary
``pyro_gen.inference.fit`` (the ELBO of a model without latents is its log-likelihood).

Transforms (``transform=`` names, ``depth`` blocks of one kind, permutations in between):

==================  ==========================================  ==============================
name                Pyro transform                              direction used for data
==================  ==========================================  ==============================
planar              ``Planar`` (Rezende and Mohamed 2015)       data -> base (inverted)
radial              ``Radial`` (Rezende and Mohamed 2015)       data -> base (inverted)
affine_coupling     ``AffineCoupling`` (RealNVP, Dinh 2017)     either (both are one pass)
spline_coupling     ``SplineCoupling`` (NSF, Durkan 2019)       data -> base (inverted)
masked_coupling     :class:`MaskedAffineCoupling` (RealNVP as   either (both are one pass)
                    in Papamakarios et al. 2017)
spline_autoregr.    ``SplineAutoregressive`` (NSF-AR)           data -> base (inverted)
maf                 ``AffineAutoregressive`` (Papamakarios 17)  data -> base (MAF; inverted)
naf                 ``NeuralAutoregressive`` (Huang 2018)       data -> base (inverted)
==================  ==========================================  ==============================

"Inverted" means the cheap direction of Pyro's transform evaluates the density and its
other direction draws samples. Pyro has no inverse at all for planar, radial and neural
autoregressive transforms (they only invert values they cached), so this module adds
them: radial in closed form, planar by bisection on one scalar, neural autoregressive by
bisection one coordinate at a time in autoregressive order.

Images (``num_levels`` set): pixels ``x = k / (L - 1)`` with ``k`` in ``{0..L-1}`` are
dequantized, ``v = (k + u) / L`` with ``u ~ U(0, 1)^D`` (Theis et al. 2016), and mapped to
R^D by ``logit(alpha + (1 - 2 alpha) v)`` whose Jacobian is part of the density. Then
``E_u[log p(v)] - D log L <= log P(k)``, so the reported bits/dim are an honest upper bound
on the discrete model's code length; :meth:`FlowDensity.log_likelihood` tightens it by
importance sampling over ``u`` (Ho et al. 2019).

The second backend: pass ``zuko_flow=`` a zuko ``LazyDistribution`` (e.g.
``zuko.flows.NSF(features=2, transforms=3)``); it is wrapped with
``pyro.contrib.zuko.ZukoToPyro`` and used behind the same interface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.distributions.torch_transform import TransformModule
from pyro.distributions.transforms.utils import clamp_preserve_gradients
from pyro.nn import AutoRegressiveNN, DenseNN
from torch import nn
from torch.distributions.transforms import Transform

from ..data.checks import check_unit_interval
from .base import data_plate

TRANSFORMS = (
    "planar",
    "radial",
    "affine_coupling",
    "masked_coupling",
    "spline_coupling",
    "spline_autoregressive",
    "maf",
    "naf",
)
SPLINE_ORDERS = ("quadratic", "linear")
ALIASES = {
    "spline": "spline_coupling",
    "nsf": "spline_coupling",
    "realnvp": "affine_coupling",
    "coupling": "affine_coupling",
    "masked_affine_coupling": "masked_coupling",
    "affine_autoregressive": "maf",
    "spline_ar": "spline_autoregressive",
    "nsf_ar": "spline_autoregressive",
    "neural_autoregressive": "naf",
}
PERMUTATIONS = ("auto", "reverse", "random", "none")
MADE_ORDERS = ("random", "sequential")


def canonical_transform(name: str) -> str:
    """Return the canonical transform name for ``name`` (aliases such as ``spline`` allowed)."""
    key = str(name).lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in TRANSFORMS:
        known = ", ".join(list(TRANSFORMS) + sorted(ALIASES))
        raise ValueError(f"transform must be one of {known}; got {name!r}")
    return key


# --------------------------------------------------------------------------- inverses
# Pyro's Planar, Radial and NeuralAutoregressive raise when asked to invert a value they did
# not produce themselves; no library offers these inverses, so they are written here. Each
# finishes with one forward call so the transform's cached log-determinant belongs to the
# returned point (Pyro computes log|det J| from values cached by the last forward call).


def _bisect(
    fn, target: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, iters: int | None = None
) -> torch.Tensor:
    """Solve ``fn(a) = target`` elementwise for a nondecreasing ``fn`` on the bracket ``[lo, hi]``.

    ``iters`` halvings (default: enough for the dtype's precision on a bracket of width ~10).
    """
    if iters is None:
        iters = 56 if target.dtype == torch.float64 else 30
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        above = fn(mid) > target
        hi = torch.where(above, mid, hi)
        lo = torch.where(above, lo, mid)
    return 0.5 * (lo + hi)


class InvertiblePlanar(T.Planar):
    """Pyro's planar flow ``y = x + u tanh(w.x + b)`` with an inverse for any ``y``.

    With ``a = w.x`` the map gives ``w.y = a + (w.u) tanh(a + b)``, monotone in ``a``
    because Pyro constrains ``w.u >= -1``; ``a`` is found by bisection on
    ``[w.y - |w.u|, w.y + |w.u|]`` and ``x = y - u tanh(a + b)``.
    """

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        bias, u, w = self._params()
        with torch.no_grad():
            u_hat = self.u_hat(u, w)
            c = (w * u_hat).sum(-1)
            wy = (y * w).sum(-1)
            a = _bisect(
                lambda a: a + c * torch.tanh(a + bias.squeeze(-1)),
                wy,
                wy - c.abs() - 1.0,
                wy + c.abs() + 1.0,
            )
            x = y - u_hat * torch.tanh(a + bias.squeeze(-1)).unsqueeze(-1)
        self._call(x)  # fills the log-determinant cache for (x, y)
        return x


class InvertibleRadial(T.Radial):
    """Pyro's radial flow ``y = x + beta (x - x0) / (alpha + r)`` with a closed-form inverse.

    ``|y - x0| = r (1 + beta / (alpha + r))`` with ``r = |x - x0|`` is the quadratic
    ``r^2 + (alpha + beta - r_y) r - alpha r_y = 0``; its positive root gives ``r`` and then
    ``x = x0 + (y - x0) (alpha + r) / (alpha + r + beta)``.
    """

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        x0, alpha_prime, beta_prime = self._params()
        alpha = nn.functional.softplus(alpha_prime)
        beta = -alpha + nn.functional.softplus(beta_prime)
        diff = y - x0
        ry = diff.norm(dim=-1, keepdim=True)
        bq = alpha + beta - ry
        r = 0.5 * (-bq + torch.sqrt(bq * bq + 4 * alpha * ry))
        x = x0 + diff * (alpha + r) / (alpha + r + beta)
        self._call(x)
        return x


class InvertibleNeuralAutoregressive(T.NeuralAutoregressive):
    """Pyro's neural autoregressive flow (sigmoid flow) with a numerical inverse.

    Each output coordinate is a strictly increasing function of its own input given the
    inputs before it in the network's autoregressive order, so the inverse is found one
    coordinate at a time in that order, each by bracketing and bisection (``D x ~100``
    forward passes: fine for sampling, never needed for densities).
    """

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        order = self.arn.permutation.tolist()
        with torch.no_grad():
            x = torch.zeros_like(y)
            for i in order:

                def coord(v: torch.Tensor, i: int = i) -> torch.Tensor:
                    xi = x.clone()
                    xi[..., i] = v
                    return self._call(xi)[..., i]

                target = y[..., i]
                lo, hi = target.clone() - 1.0, target.clone() + 1.0
                for _ in range(40):  # widen the bracket until it holds the root
                    low_bad, high_bad = coord(lo) > target, coord(hi) < target
                    if not (low_bad.any() or high_bad.any()):
                        break
                    lo = torch.where(low_bad, lo - 2 * (hi - lo), lo)
                    hi = torch.where(high_bad, hi + 2 * (hi - lo), hi)
                x[..., i] = _bisect(coord, target, lo, hi)
        self._call(x)
        return x


class IncrementalAffineAutoregressive(T.AffineAutoregressive):
    """Pyro's affine autoregressive transform (a MADE) with a faster sequential inverse.

    Pyro inverts ``y = mu(x) + exp(s(x)) x`` one coordinate at a time with a full pass of the
    MADE per coordinate. Here the first layer's pre-activations are updated by one column per
    coordinate set (a rank-one update), the other hidden layers are recomputed, and only the
    two output units of the next coordinate are formed: per coordinate about ``H + (L - 1) H^2
    + 2H`` multiply-adds instead of ``D H + (L - 1) H^2 + 2 D H`` (``L`` hidden layers of ``H``
    units over ``D`` inputs), the same values up to rounding. MADEs with skip connections, or
    the ``stable`` variant, use Pyro's inverse.
    """

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        arn = self.arn
        if arn.skip_layer is not None or arn.output_multiplier != 2 or not arn.all_ones:
            return super()._inverse(y)
        d = y.shape[-1]
        flat = y.reshape(-1, d)
        layers = list(arn.layers)
        weights = [layer.mask * layer.weight for layer in layers]
        first_w, first_b = weights[0], layers[0].bias
        out_w, out_b = weights[-1], layers[-1].bias
        x = torch.zeros_like(flat)
        pre = first_b.expand(flat.shape[0], -1).clone()  # first layer's pre-activations at x = 0
        lo, hi = self.log_scale_min_clip, self.log_scale_max_clip
        for idx in arn.permutation.tolist():
            h = arn.f(pre)
            for w, layer in zip(weights[1:-1], layers[1:-1], strict=True):
                h = arn.f(torch.nn.functional.linear(h, w, layer.bias))
            mean = h @ out_w[idx] + out_b[idx]
            log_scale = clamp_preserve_gradients(h @ out_w[d + idx] + out_b[d + idx], lo, hi)
            x[:, idx] = (flat[:, idx] - mean) * torch.exp(-log_scale)
            pre = pre + x[:, idx : idx + 1] * first_w[:, idx]
        x = x.reshape(y.shape)
        _, log_scale = arn(x)
        self._cached_log_scale = clamp_preserve_gradients(log_scale, min=lo, max=hi)
        return x


class MaskedAffineCoupling(TransformModule):
    """The affine coupling layer of RealNVP as Papamakarios et al. (2017) build it (their
    ``nvps.CouplingLayer``): a binary mask ``m`` (alternating coordinates, ``m_i = (i + parity)
    mod 2``) keeps the coordinates with ``m_i = 1`` and transforms the others with a scale
    ``s`` and a shift ``t`` of the kept ones, each from its own network on ``m * x``:

        data -> base:  u = m x + (1 - m) exp(-s(m x)) (x - t(m x))
        base -> data:  x = m u + (1 - m) (u exp(s(m u)) + t(m u))

    The scale network has ``tanh`` hidden units, the shift network ``relu`` ones (the paper's
    ``s_act``/``t_act``), both ``hidden`` wide with a linear output layer. This module's own
    direction is base -> data (log|det| = sum of ``(1 - m) s``); both directions are one pass.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, dim: int, hidden: Sequence[int], parity: int = 0):
        super().__init__(cache_size=1)
        if dim < 2:
            raise ValueError(f"masked_coupling needs at least 2 dimensions, got {dim}")
        self.register_buffer("mask", ((torch.arange(dim) + int(parity)) % 2).to(torch.get_default_dtype()))
        self.scale_net = _mlp(dim, hidden, dim, nn.Tanh)
        self.shift_net = _mlp(dim, hidden, dim, nn.ReLU)
        self._cached_log_scale: torch.Tensor | None = None

    def _scale_shift(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(s, t)`` of the kept coordinates of ``v``, zero on the kept coordinates themselves."""
        keep = self.mask.to(v.dtype)
        mv = v * keep
        return self.scale_net(mv) * (1 - keep), self.shift_net(mv) * (1 - keep)

    def _call(self, u: torch.Tensor) -> torch.Tensor:
        s, t = self._scale_shift(u)
        self._cached_log_scale = s
        return u * torch.exp(s) + t

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        s, t = self._scale_shift(x)
        self._cached_log_scale = s
        return (x - t) * torch.exp(-s)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return ``sum_i (1 - m_i) s_i`` (nats), the log|det| of the base -> data map at ``x -> y``."""
        x_old, y_old = self._cached_x_y
        if self._cached_log_scale is not None and x is x_old and y is y_old:
            s = self._cached_log_scale
        else:
            s, _ = self._scale_shift(x)
        return s.sum(-1)


def _mlp(n_in: int, hidden: Sequence[int], n_out: int, activation: type[nn.Module]) -> nn.Sequential:
    """Return an MLP ``n_in -> hidden... -> n_out`` with ``activation`` after each hidden layer."""
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, int(h)), activation()]
        width = int(h)
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def make_transform(
    name: str,
    dim: int,
    hidden: Sequence[int] = (64, 64),
    count_bins: int = 8,
    bound: float = 5.0,
    order: str = "quadratic",
    spline_both_halves: bool = False,
    *,
    parity: int = 0,
    made_order: str = "random",
) -> tuple[nn.Module, Transform]:
    """Return ``(module, generative_transform)`` for one flow block of kind ``name``.

    ``module`` holds the parameters; ``generative_transform`` maps base space towards data
    space (it is ``module`` itself, or ``module.inv`` where the module's cheap direction is
    the data-to-base one). ``spline_both_halves`` makes a spline coupling also transform its
    conditioning half (an elementwise spline initialised at the identity; by default that
    half passes unchanged, as in RealNVP). ``hidden`` are the conditioner widths; ``order`` is the
    splines' order: ``"quadratic"`` (rational-quadratic, Durkan et al. 2019, as in zuko's NSF)
    or ``"linear"`` (rational-linear, Dolatabadi et al. 2020, Pyro's helpers' default).
    ``parity`` chooses the kept coordinates of a ``masked_coupling`` block (``(i + parity)
    mod 2 == 1``). ``made_order`` is the input order of a MADE conditioner (``maf``):
    ``"random"`` (Pyro's default, a random permutation) or ``"sequential"`` (coordinate 0
    first, as Papamakarios et al. 2017 order their first MADE).
    """
    name = canonical_transform(name)
    if made_order not in MADE_ORDERS:
        raise ValueError(f"made_order must be one of {MADE_ORDERS}, got {made_order!r}")
    if order not in SPLINE_ORDERS:
        raise ValueError(f"spline order must be one of {SPLINE_ORDERS}, got {order!r}")
    hidden = [int(h) for h in hidden]
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    if name in ("affine_coupling", "masked_coupling", "spline_coupling") and dim < 2:
        raise ValueError(f"{name} needs at least 2 dimensions, got {dim}")
    if name in ("maf", "naf", "spline_autoregressive") and min(hidden, default=dim) < dim:
        raise ValueError(
            f"{name} uses a MADE conditioner whose widths must be at least the data dimension "
            f"({dim}); got hidden={hidden}"
        )
    if name == "planar":
        m = InvertiblePlanar(dim)
        return m, m.inv
    if name == "radial":
        m = InvertibleRadial(dim)
        return m, m.inv
    if name == "affine_coupling":
        m = T.affine_coupling(dim, hidden_dims=hidden)
        return m, m
    if name == "masked_coupling":
        m = MaskedAffineCoupling(dim, hidden, parity)
        return m, m
    # Pyro's spline helpers always build the four parameter groups of rational-linear splines
    # (and spline_autoregressive then fails for order="quadratic"), so the conditioners are
    # built here with the groups the chosen order needs: widths, heights, inner derivatives
    # (+ lambdas for linear).
    groups = [count_bins, count_bins, count_bins - 1] + ([count_bins] if order == "linear" else [])
    if name == "spline_coupling":
        split = dim // 2
        net = DenseNN(split, hidden, param_dims=[(dim - split) * g for g in groups])
        m = T.SplineCoupling(dim, split, net, count_bins, bound, order, identity=not spline_both_halves)
        with torch.no_grad():  # the conditioning half's elementwise spline starts as the identity
            low = m.lower_spline
            low.unnormalized_widths.zero_()
            low.unnormalized_heights.zero_()
            low.unnormalized_derivatives.fill_(math.log(math.e - 1.0))  # softplus^-1(1)
            if order == "linear":
                low.unnormalized_lambdas.fill_(0.5)
        return m, m.inv
    if name == "spline_autoregressive":
        arn = AutoRegressiveNN(dim, hidden, param_dims=groups)
        m = T.SplineAutoregressive(dim, arn, count_bins=count_bins, bound=bound, order=order)
        return m, m.inv
    if name == "maf":
        if made_order == "sequential":
            arn = AutoRegressiveNN(dim, hidden, permutation=torch.arange(dim))
        else:
            arn = AutoRegressiveNN(dim, hidden)  # a random input order, as Pyro's helper draws it
        m = IncrementalAffineAutoregressive(arn)
        return m, m.inv
    # naf: Pyro's helper builds a plain NeuralAutoregressive; rebuild it with our inverse.
    proto = T.neural_autoregressive(dim, hidden_dims=hidden)
    m = InvertibleNeuralAutoregressive(proto.arn, hidden_units=proto.hidden_units)
    return m, m.inv


def _zero_last_layer(module: nn.Module) -> None:
    """Zero the conditioner's output layer of an affine block (MAF, affine and masked coupling) so the
    block starts as the identity (shift 0, log-scale 0), as Glow does; other kinds are left."""
    net = getattr(module, "arn", None) if isinstance(module, T.AffineAutoregressive) else None
    if isinstance(module, T.AffineCoupling):
        net = module.nn
    if isinstance(module, MaskedAffineCoupling):
        last = [module.scale_net[-1], module.shift_net[-1]]
    elif net is None:
        raise ValueError("identity_init applies to the affine flows (maf, affine_coupling, masked_coupling)")
    else:
        last = [net.layers[-1]]
    with torch.no_grad():
        for layer in last:
            layer.weight.zero_()
            layer.bias.zero_()


# --------------------------------------------------------------------------- images
class Dequantized(TorchDistribution):
    """A distribution over grey-level pixels ``k / (L - 1)`` from a continuous density on [0, 1]^D.

    ``log_prob(x)`` is the single-sample uniform-dequantization estimate
    ``log p_c((k + u) / L) - D log L`` (nats, a stochastic lower bound on log P(k));
    ``sample`` returns ``floor(L v) / (L - 1)`` for ``v`` drawn from the continuous density.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.unit_interval, 1)
    has_rsample = False

    def __init__(self, continuous: dist.Distribution, num_levels: int, sampler=None):
        if num_levels < 2:
            raise ValueError(f"num_levels must be at least 2, got {num_levels}")
        self.continuous = continuous
        self.num_levels = int(num_levels)
        self._sampler = sampler
        super().__init__(continuous.batch_shape, continuous.event_shape, validate_args=False)

    def dequantize(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(k + u) / L`` for pixels ``x = k / (L - 1)``, ``u ~ U(0, 1)`` fresh per pixel."""
        levels = torch.round(x * (self.num_levels - 1))
        return (levels + torch.rand_like(x)) / self.num_levels

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        d = self.event_shape.numel()
        return self.continuous.log_prob(self.dequantize(x)) - d * math.log(self.num_levels)

    def sample(self, sample_shape=()) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        v = self._sampler(shape) if self._sampler is not None else self.continuous.sample(shape)
        k = torch.floor(v * self.num_levels).clamp(0, self.num_levels - 1)
        return k / (self.num_levels - 1)

    def expand(self, batch_shape, _instance=None):
        return Dequantized(self.continuous.expand(batch_shape), self.num_levels, self._sampler)


def dequantize_once(x: torch.Tensor, num_levels: int, seed: int = 0) -> torch.Tensor:
    """Return ``v = (k + u) / L`` (float64, in ``[0, 1]``) for pixels ``x = k / (L - 1)``, with
    ``u ~ U(0, 1)`` drawn for all of ``x`` at once from a generator seeded with ``seed`` (so the
    result depends on the seed and the data only)."""
    if num_levels < 2:
        raise ValueError(f"num_levels must be at least 2, got {num_levels}")
    k = torch.round(x.double() * (num_levels - 1))
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    return (k + u) / num_levels


def logit_pixels(v: torch.Tensor, alpha: float) -> torch.Tensor:
    """Return ``logit(alpha + (1 - 2 alpha) v)`` elementwise in float64, with ``1 - s`` formed as
    ``alpha + (1 - 2 alpha)(1 - v)`` so that pixels near 1 keep their precision (``alpha = lambda``
    of Papamakarios et al. 2017: 1e-6 for MNIST, 0.05 for CIFAR-10)."""
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    v = v.double()
    return torch.log(alpha + (1 - 2 * alpha) * v) - torch.log(alpha + (1 - 2 * alpha) * (1 - v))


def logit_log_jacobian(v: torch.Tensor, alpha: float) -> torch.Tensor:
    """Return ``sum_i log|dy_i / dv_i|`` per row (nats, float64) of the logit map
    ``y = logit(alpha + (1 - 2 alpha) v)``: ``log(1 - 2 alpha) - log s_i - log(1 - s_i)`` summed."""
    v = v.double()
    s, one_minus = alpha + (1 - 2 * alpha) * v, alpha + (1 - 2 * alpha) * (1 - v)
    return (math.log(1 - 2 * alpha) - torch.log(s) - torch.log(one_minus)).sum(-1)


# --------------------------------------------------------------------------- the model
class FlowDensity(nn.Module):
    """A normalizing-flow density over ``(N, dim)`` data, trained by maximum likelihood with ``fit``.

    ``transform`` (see :data:`TRANSFORMS`; ``spline`` means spline coupling) is stacked
    ``depth`` times with a permutation between blocks (``"auto"``: reverse for 2-D data,
    a fixed random permutation otherwise) and, with ``batch_norm=True``, Pyro's
    ``BatchNorm`` between blocks (with ``bn_last=True`` also after the last block met from the
    data side, so that every block is followed by one, as in MAF and the paper's RealNVP).
    ``made_order`` is the input order of MADE conditioners (``"random"`` or ``"sequential"``);
    ``masked_coupling`` blocks alternate their mask from block to block. ``hidden`` are the
    conditioner widths; ``count_bins``, ``bound`` and ``order`` configure the splines. An
    elementwise affine standardization (buffers ``loc``/``scale``, set by
    :meth:`init_from_data`) is applied last in the generative direction. ``num_levels``
    switches on image mode (dequantization plus the logit change of variables with
    ``alpha``). ``zuko_flow`` replaces the Pyro stack by a zuko flow.

    Batch norm evaluates with Pyro's running averages until :func:`set_batch_norm_statistics`
    gives it the full training set's; ``bn_stats`` (``"running"`` or ``"full"``) says which,
    and a train-mode call of :meth:`model` sets it back to ``"running"``.
    """

    def __init__(
        self,
        dim: int,
        transform: str = "spline_coupling",
        depth: int = 8,
        hidden: Sequence[int] = (128, 128),
        *,
        count_bins: int = 8,
        bound: float = 5.0,
        order: str = "quadratic",
        spline_both_halves: bool = False,
        identity_init: bool = False,
        permutation: str = "auto",
        batch_norm: bool = False,
        bn_last: bool = False,
        made_order: str = "random",
        num_levels: int | None = None,
        alpha: float = 1e-3,
        zuko_flow: nn.Module | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, got {depth!r}")
        if permutation not in PERMUTATIONS:
            raise ValueError(f"permutation must be one of {PERMUTATIONS}, got {permutation!r}")
        if made_order not in MADE_ORDERS:
            raise ValueError(f"made_order must be one of {MADE_ORDERS}, got {made_order!r}")
        if bn_last and not batch_norm:
            raise ValueError("bn_last (a batch-norm layer after the last block too) needs batch_norm")
        if num_levels is not None and num_levels < 2:
            raise ValueError(f"num_levels must be None or at least 2, got {num_levels}")
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"alpha must be in [0, 0.5), got {alpha}")
        self.dim = dim
        self.transform_name = "zuko" if zuko_flow is not None else canonical_transform(transform)
        self.depth = depth
        self.num_levels = num_levels
        self.alpha = float(alpha)
        self.config = dict(
            dim=dim,
            transform=self.transform_name,
            depth=depth,
            hidden=list(hidden),
            count_bins=count_bins,
            bound=bound,
            order=order,
            spline_both_halves=spline_both_halves,
            identity_init=identity_init,
            permutation=permutation,
            batch_norm=batch_norm,
            num_levels=num_levels,
            alpha=alpha,
            seed=seed,
        )
        # only when set, so that the configuration of flows made before these options is unchanged
        if bn_last:
            self.config["bn_last"] = True
        if made_order != "random":
            self.config["made_order"] = made_order
        self.register_buffer("loc", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("base_loc", torch.zeros(dim))
        self.register_buffer("base_scale", torch.ones(dim))
        self.zuko_flow = zuko_flow
        self.bn_stats = "running"  # "full" once set_batch_norm_statistics ran; training resets it
        self.layers = nn.ModuleList()
        self._generative: list[Transform] = []
        if zuko_flow is not None:
            return
        g = torch.Generator().manual_seed(seed)
        for i in range(depth):
            module, gen = make_transform(
                self.transform_name,
                dim,
                hidden,
                count_bins,
                bound,
                order,
                spline_both_halves,
                parity=i % 2,
                made_order=made_order,
            )
            self.layers.append(module)
            self._generative.append(gen)
            if i < depth - 1:
                perm = self._permutation(permutation, i, g)
                if perm is not None:
                    p = T.Permute(perm)
                    self._generative.append(p)
            if identity_init:
                _zero_last_layer(module)
            if batch_norm and i < depth - 1:
                bn = T.BatchNorm(dim)
                self.layers.append(bn)
                self._generative.append(bn)
        if bn_last:  # on the base side of the first generative block: the last one from the data
            bn = T.BatchNorm(dim)
            self.layers.append(bn)
            self._generative.insert(0, bn)

    def _permutation(self, kind: str, i: int, g: torch.Generator) -> torch.Tensor | None:
        if kind == "none" or self.dim == 1:
            return None
        if kind == "reverse" or (kind == "auto" and self.dim == 2):
            return torch.arange(self.dim - 1, -1, -1)
        return torch.randperm(self.dim, generator=g)

    def _apply(self, fn, *args, **kwargs):
        # Permute keeps its permutation as a plain tensor attribute: move it with the module.
        out = super()._apply(fn, *args, **kwargs)
        for t in self._generative:
            if isinstance(t, T.Permute):
                t.permutation = t.permutation.to(self.loc.device)
        return out

    # ------------------------------------------------------------- construction
    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> FlowDensity:
        """Set the standardization ``loc``/``scale`` to the mean/std of ``x`` (in logit space for
        images, of dequantized pixels); returns ``self``."""
        if self.num_levels is not None:  # dequantized (fixed noise), so constant pixels keep a spread
            k = torch.round(x * (self.num_levels - 1))
            u = torch.rand(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
            x = self._to_real((k + u) / self.num_levels)
        self.loc.copy_(x.mean(0))
        self.scale.copy_(x.std(0).clamp_min(1e-3) if x.shape[0] > 1 else torch.ones_like(self.scale))
        return self

    def _to_real(self, v: torch.Tensor) -> torch.Tensor:
        s = self.alpha + (1 - 2 * self.alpha) * v
        return torch.log(s) - torch.log1p(-s)

    def post_transforms(self) -> list[Transform]:
        """Return the fixed generative transforms after the flow: standardization, then (images)
        the sigmoid and the affine map from ``[alpha, 1 - alpha]`` onto ``[0, 1]``."""
        ts: list[Transform] = [T.AffineTransform(self.loc, self.scale, event_dim=1)]
        if self.num_levels is not None:
            a = self.alpha
            ts += [T.SigmoidTransform(), T.AffineTransform(-a / (1 - 2 * a), 1 / (1 - 2 * a))]
        return ts

    def clear_cache(self) -> None:
        """Forget the input/output pairs Pyro's transforms cached (call after each optimizer step)."""
        for t in self._generative:
            t.clear_cache()
        for m in self.layers:
            if isinstance(m, Transform):
                m.clear_cache()

    def base(self) -> dist.Distribution:
        """Return the standard normal base distribution with event shape ``(dim,)``."""
        return dist.Normal(self.base_loc, self.base_scale).to_event(1)

    def continuous(self) -> dist.Distribution:
        """Return the flow's continuous distribution over data space (``[0, 1]^D`` for images)."""
        post = self.post_transforms()
        if self.zuko_flow is not None:
            from pyro.contrib.zuko import ZukoToPyro

            return dist.TransformedDistribution(ZukoToPyro(self.zuko_flow()), post)
        return dist.TransformedDistribution(self.base(), self._generative + post)

    def distribution(self) -> dist.Distribution:
        """Return the distribution the model observes data under (dequantized for images)."""
        if self.num_levels is None:
            return self.continuous()
        return Dequantized(self.continuous(), self.num_levels, sampler=self._sample_continuous)

    def _sample_continuous(self, sample_shape=()) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        if self.zuko_flow is not None:
            y = self.zuko_flow().sample(shape)
            for t in self.post_transforms():
                y = t(y)
            return y
        return self.continuous().sample(shape)

    # ------------------------------------------------------------- the Pyro pair
    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` if ``x`` is not ``(N, dim)`` (and in [0, 1] for image flows)."""
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"{name} must have shape (N, {self.dim}) for this flow, got {tuple(x.shape)}")
        if self.num_levels is not None:
            check_unit_interval(x, name)

    def model(self, x: torch.Tensor) -> None:
        """Observe the batch ``x`` under the flow; the ELBO of this model is log p(x) (nats).

        In train mode batch norm uses the batch's statistics (and updates its running ones), so
        full-data statistics set by :func:`set_batch_norm_statistics` no longer hold.
        """
        if self.training:
            self.bn_stats = "running"
        self.clear_cache()
        with data_plate(x):
            pyro.sample("x", self.distribution(), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        """No latent variables: the guide is empty (``fit`` needs a model/guide pair)."""

    # ------------------------------------------------------------- public densities
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact log-density of each row of ``x`` under the continuous flow, ``(N,)`` nats.

        For image flows ``x`` lives in the continuous pixel space ``[0, 1]^D`` (dequantized
        pixels); use :meth:`log_likelihood` for the discrete pixels' log-likelihood.
        """
        self.clear_cache()
        out = self.continuous().log_prob(x)
        self.clear_cache()
        return out

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, num_samples: int = 1, batch_size: int = 1024) -> torch.Tensor:
        """Return log p(x) per row of ``x`` in nats, ``(N,)``.

        Continuous data: exact. Image data: ``log (1/S) sum_s p_c(v_s) - D log L`` over
        ``S = num_samples`` uniform dequantizations ``v_s``, a lower bound on the discrete
        log-likelihood that tightens as ``S`` grows (``S = 1`` is the training objective).
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        out = []
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            if self.num_levels is None:
                out.append(self.log_prob(xb))
                continue
            d = self.distribution()
            reps = max(1, min(num_samples, batch_size * 16 // xb.shape[0]))  # draws per pass
            acc = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64)
            done = 0
            while done < num_samples:
                r = min(reps, num_samples - done)
                lp = d.log_prob(xb.repeat(r, 1)).reshape(r, xb.shape[0]).double()
                acc = torch.logaddexp(acc, torch.logsumexp(lp, 0))
                done += r
                self.clear_cache()
            out.append((acc - math.log(num_samples)).to(xb.dtype))
        return torch.cat(out)

    def logit_space(self) -> dist.Distribution:
        """Return an image flow's density over logit space, ``y = logit(alpha + (1 - 2 alpha) v)``
        for dequantized pixels ``v`` in ``[0, 1]^D``: the flow and its standardization without the
        sigmoid (so without the Jacobian of the logit map); ``ValueError`` for a flow over vectors."""
        if self.num_levels is None:
            raise ValueError("logit space exists for image flows only (num_levels set)")
        post = [T.AffineTransform(self.loc, self.scale, event_dim=1)]
        if self.zuko_flow is not None:
            from pyro.contrib.zuko import ZukoToPyro

            return dist.TransformedDistribution(ZukoToPyro(self.zuko_flow()), post)
        return dist.TransformedDistribution(self.base(), self._generative + post)

    @torch.no_grad()
    def logit_log_likelihood(
        self, x: torch.Tensor, seed: int = 0, batch_size: int = 1024, progress: bool = False
    ) -> torch.Tensor:
        """Return ``log p(y)`` per image of ``x`` in nats, ``(N,)``: the density of the logit-space
        image ``y = logit(alpha + (1 - 2 alpha) v)``, where ``v = (k + u) / L`` are the pixels
        ``x = k / (L - 1)`` dequantized once with noise ``u`` drawn from ``seed``
        (:func:`dequantize_once`, :func:`logit_pixels`).

        This is the log-likelihood Papamakarios et al. (2017) report for MNIST and CIFAR-10
        ("in logit space", their Table 2 with ``alpha = lambda``): no ``- D log L`` term and no
        Jacobian of the logit map. It relates to the flow's density of ``v`` by
        ``log p(y) = log p_c(v) - sum_i log|dy_i / dv_i|`` with
        ``log|dy_i / dv_i| = log(1 - 2 alpha) - log s_i - log(1 - s_i)``, ``s = alpha + (1 - 2 alpha) v``.
        ``progress`` shows a bar over the batches on stderr.
        """
        if self.num_levels is None:
            raise ValueError("logit_log_likelihood is for image flows (num_levels set)")
        self.check_data(x)
        y = logit_pixels(dequantize_once(x.cpu(), self.num_levels, seed), self.alpha).to(self.loc.dtype)
        d = self.logit_space()
        out = []
        starts = range(0, x.shape[0], batch_size)
        if progress:
            import sys

            from tqdm.auto import tqdm

            starts = tqdm(
                starts, desc="logit-space log-likelihood", unit="batch", file=sys.stderr, mininterval=5
            )
        for start in starts:
            self.clear_cache()
            out.append(d.log_prob(y[start : start + batch_size].to(self.loc.device)).cpu())
        self.clear_cache()
        return torch.cat(out)

    @torch.no_grad()
    def bits_per_dim(self, x: torch.Tensor, num_samples: int = 1) -> float:
        """Return ``-mean log p(x) / (D ln 2)`` (bits per dimension) using :meth:`log_likelihood`."""
        return float(-self.log_likelihood(x, num_samples).mean() / (self.dim * math.log(2)))

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Return ``(num_samples, dim)`` draws (grey-level pixels ``k / (L - 1)`` for image flows)."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.clear_cache()
        d = self.distribution()
        out = self._sample_continuous((num_samples,)) if self.num_levels is None else d.sample((num_samples,))
        self.clear_cache()
        return out

    def num_parameters(self) -> int:
        """Return the number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- zuko backend
ZUKO_FLOWS = ("nsf", "maf", "naf", "realnvp", "nice", "ncsf", "sospf")


def make_zuko_flow(
    name: str,
    dim: int,
    depth: int = 8,
    hidden: Sequence[int] = (64, 64),
    count_bins: int = 8,
    passes: int | None = None,
) -> nn.Module:
    """Return an unconditional zuko flow ``name`` (see :data:`ZUKO_FLOWS`) with ``depth`` transforms.

    Requires the optional ``zuko`` package (``pip install pyro-gen[zuko]``). ``nsf`` is zuko's
    neural spline flow (``count_bins`` bins), ``maf`` its affine MAF; both are fully
    autoregressive unless ``passes=2``, which makes them coupling flows.
    """
    try:
        import zuko
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ValueError(
            "the zuko backend needs the optional 'zuko' package: pip install 'pyro-gen[zuko]'"
        ) from e
    key = str(name).lower()
    if key not in ZUKO_FLOWS:
        raise ValueError(f"zuko flow must be one of {ZUKO_FLOWS}, got {name!r}")
    kw = dict(features=dim, transforms=depth, hidden_features=tuple(int(h) for h in hidden))
    if passes is not None:
        if key not in ("nsf", "maf"):
            raise ValueError(f"passes applies to zuko's nsf and maf, not {name!r}")
        kw["passes"] = int(passes)
    if key == "nsf":
        return zuko.flows.NSF(bins=count_bins, **kw)
    if key == "ncsf":
        return zuko.flows.NCSF(bins=count_bins, **kw)
    if key == "naf":
        return zuko.flows.NAF(
            features=dim, transforms=depth, network={"hidden_features": kw["hidden_features"]}
        )
    cls = {
        "maf": zuko.flows.MAF,
        "realnvp": zuko.flows.RealNVP,
        "nice": zuko.flows.NICE,
        "sospf": zuko.flows.SOSPF,
    }
    return cls[key](**kw)


# --------------------------------------------------------------------------- batch norm
BN_STATS = ("full", "running")


def batch_norm_layers(flow: FlowDensity) -> list[T.BatchNorm]:
    """Return the flow's ``BatchNorm`` transforms in the order data meet them on the way to the base
    (data side first); an empty list for a flow without batch norm or with the zuko backend."""
    return [t for t in reversed(flow._generative) if isinstance(t, T.BatchNorm)]


def _to_flow_input(flow: FlowDensity, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Map data rows ``x`` to the space the flow's transforms start from (data side): dequantized
    with noise from ``generator`` for image flows, then the post transforms inverted."""
    if flow.num_levels is not None:
        k = torch.round(x * (flow.num_levels - 1))
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = (k + u) / flow.num_levels
    for t in reversed(flow.post_transforms()):
        x = t.inv(x)
    return x


@torch.no_grad()
def set_batch_norm_statistics(
    flow: FlowDensity, data: torch.Tensor, batch_size: int = 1024, seed: int = 0
) -> dict[str, float | int]:
    """Set every batch-norm layer's statistics to the mean and variance of its input over ``data``.

    This is how MAF (Papamakarios et al. 2017) evaluates batch norm: after training, each
    layer's ``moving_mean`` / ``moving_variance`` (what Pyro's ``BatchNorm`` uses in eval
    mode) become the mean and the unbiased variance (as train mode computes them) of the
    values reaching the layer from the data side over the whole training set. One pass in
    order through the stack: the data (dequantized once, with noise from ``seed``, for image
    flows; in the flow's standardized space) are carried through the transforms in eval mode,
    ``batch_size`` rows at a time into one ``(N, dim)`` buffer, and each layer's statistics
    are set from the buffer (accumulated in float64) before the buffer goes through it, so
    the layers below a layer already use full statistics. The flow is left in eval mode.

    Returns ``{"bn_layers": count, "bn_points": N, "bn_min_variance": smallest variance set,
    "bn_max_log_variance_ratio": largest |ln(full / running variance)| over coordinates and
    layers}`` (the last two in the flow's standardized units; empty-layer flows return
    ``{"bn_layers": 0}`` and change nothing). Afterwards :attr:`FlowDensity.bn_stats` is
    ``"full"`` until the flow is trained again.
    """
    layers = batch_norm_layers(flow)
    if not layers:
        return {"bn_layers": 0}
    if data.dim() != 2 or data.shape[-1] != flow.dim or data.shape[0] < 2:
        raise ValueError(f"data must have shape (N >= 2, {flow.dim}), got {tuple(data.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    flow.eval()
    flow.clear_cache()
    device = flow.loc.device
    n = int(data.shape[0])
    g = torch.Generator().manual_seed(seed)
    buf = torch.empty(n, flow.dim, dtype=flow.loc.dtype, device=device)
    for start in range(0, n, batch_size):
        xb = data[start : start + batch_size].to(device=device, dtype=flow.loc.dtype)
        buf[start : start + xb.shape[0]] = _to_flow_input(flow, xb, g)
    remaining = len(layers)
    min_var, max_ratio = math.inf, 0.0
    for t in reversed(flow._generative):
        if isinstance(t, T.BatchNorm):
            total = buf.sum(0, dtype=torch.float64)
            mean = total / n
            m2 = torch.zeros(flow.dim, dtype=torch.float64, device=device)
            for start in range(0, n, batch_size):
                m2 += ((buf[start : start + batch_size].double() - mean) ** 2).sum(0)
            var = m2 / (n - 1)
            ratio = (var.clamp_min(1e-300) / t.moving_variance.double().clamp_min(1e-300)).log().abs()
            max_ratio = max(max_ratio, float(ratio.max()))
            min_var = min(min_var, float(var.min()))
            t.moving_mean.copy_(mean.to(t.moving_mean.dtype))
            t.moving_variance.copy_(var.to(t.moving_variance.dtype))
            remaining -= 1
            if remaining == 0:
                break
        for start in range(0, n, batch_size):
            buf[start : start + batch_size] = t.inv(buf[start : start + batch_size])
            t.clear_cache()
    flow.clear_cache()
    flow.bn_stats = "full"
    return {
        "bn_layers": len(layers),
        "bn_points": n,
        "bn_min_variance": min_var,
        "bn_max_log_variance_ratio": max_ratio,
    }
