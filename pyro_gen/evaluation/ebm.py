"""The normalizer of an energy-based model: exact quadrature in 2-D, annealed importance sampling otherwise.

Both work on standardized coordinates ``z`` of an :class:`~pyro_gen.models.ebm.EnergyModel`
and return ``log Z`` in data coordinates (nats): ``log Z_x = log Z_z + sum_d log scale_d``.

* :func:`quadrature_log_normalizer`: the midpoint rule on a composite grid, coarse cells over
  a wide box (where only the Gaussian confinement's tails live) and each cell that meets the
  data's box split into ``refine x refine`` cells; :func:`ebm_quadrature` also computes it at
  half the refinement, so the difference measures the quadrature error.
* :func:`ais_log_normalizer`: annealed importance sampling (Neal 2001) from the model's base
  ``N(0, tau^2 I)`` along the geometric path ``p_beta(z) ~ N(z; 0, tau^2 I) exp(-beta f(z))``,
  a sigmoid schedule of ``beta`` (Grosse et al. 2015) and one HMC transition per temperature
  with a step size adapted to an acceptance rate of 0.65 across the chains. Independent runs
  give the estimate's spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

Bounds = tuple[float, float, float, float]


@torch.no_grad()
def _log_f_at(log_f: Callable[[torch.Tensor], torch.Tensor], pts: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([log_f(pts[i : i + batch]).double() for i in range(0, pts.shape[0], batch)])


def quadrature_log_normalizer(
    log_f: Callable[[torch.Tensor], torch.Tensor],
    outer: Bounds,
    inner: Bounds | None = None,
    *,
    cells: int = 200,
    refine: int = 10,
    batch_size: int = 65536,
    dtype: torch.dtype = torch.float32,
) -> dict[str, float]:
    """Return ``log`` of the integral of ``exp(log_f)`` over the 2-D box ``outer`` (midpoint rule), in nats.

    ``outer = (x0, x1, y0, y1)`` is cut into ``cells x cells`` cells; every cell that meets
    the box ``inner`` is cut again into ``refine x refine`` cells. ``log_f`` maps ``(N, 2)``
    points to ``(N,)`` log-values. Returns ``log_z``, ``refined_mass`` (share of the integral
    in refined cells), ``edge_mass`` (share in the outermost ring of cells: near 0 when the box
    holds the mass) and ``points`` (evaluations).
    """
    x0, x1, y0, y1 = (float(b) for b in outer)
    if not (x1 > x0 and y1 > y0) or cells < 2 or refine < 1:
        raise ValueError(f"need a non-empty box, cells >= 2 and refine >= 1; got {outer}, {cells}, {refine}")
    dx, dy = (x1 - x0) / cells, (y1 - y0) / cells
    ix, iy = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
    lo_x, lo_y = x0 + dx * ix.double(), y0 + dy * iy.double()
    if inner is None:
        fine = torch.zeros(cells, cells, dtype=torch.bool)
    else:
        a0, a1, b0, b1 = (float(b) for b in inner)
        fine = (lo_x < a1) & (lo_x + dx > a0) & (lo_y < b1) & (lo_y + dy > b0)
    edge = (ix == 0) | (iy == 0) | (ix == cells - 1) | (iy == cells - 1)
    coarse_pts = torch.stack([lo_x[~fine] + dx / 2, lo_y[~fine] + dy / 2], 1)
    lc = _log_f_at(log_f, coarse_pts.to(dtype), batch_size) + math.log(dx * dy)
    offs = (torch.arange(refine, dtype=torch.float64) + 0.5) / refine
    ox, oy = torch.meshgrid(offs * dx, offs * dy, indexing="ij")
    fine_pts = torch.stack(
        [
            (lo_x[fine][:, None] + ox.reshape(1, -1)).reshape(-1),
            (lo_y[fine][:, None] + oy.reshape(1, -1)).reshape(-1),
        ],
        1,
    )
    lf = (
        _log_f_at(log_f, fine_pts.to(dtype), batch_size) + math.log(dx * dy / refine**2)
        if fine_pts.shape[0]
        else torch.empty(0, dtype=torch.float64)
    )
    everything = torch.cat([lc, lf])
    log_z = float(torch.logsumexp(everything, 0))
    edge_coarse = edge[~fine]
    edge_fine = edge[fine].repeat_interleave(refine * refine)
    edges = torch.cat([lc[edge_coarse], lf[edge_fine]])
    edge_mass = float(torch.exp(torch.logsumexp(edges, 0) - log_z)) if edges.numel() else 0.0
    refined = float(torch.exp(torch.logsumexp(lf, 0) - log_z)) if lf.numel() else 0.0
    if not math.isfinite(log_z):
        raise ValueError(f"the quadrature of the density is not finite (log Z = {log_z})")
    return {
        "log_z": log_z,
        "refined_mass": refined,
        "edge_mass": edge_mass,
        "points": int(everything.numel()),
    }


def ebm_quadrature(
    model: Any, data: torch.Tensor, *, cell: float = 0.005, coarse_cell: float = 0.1, width: float = 6.0
) -> dict[str, float]:
    """Return the exact-by-quadrature ``log Z`` (nats, data coordinates) of a 2-D energy model.

    On standardized coordinates the outer box is ``[-R, R]^2`` with ``R = width * tau`` plus
    the data's reach, in cells of ``coarse_cell``; the data's box (``data``, padded by a tenth
    of its range) is refined to cells of about ``cell``. Returns ``log_z``, ``log_z_half``
    (the same at half the refinement), ``quadrature_error`` (their absolute difference, nats),
    ``edge_mass``, ``refined_mass`` and ``points``.
    """
    if model.dim != 2:
        raise ValueError(f"quadrature needs 2-D data, got {model.dim} dimensions")
    with torch.no_grad():
        z = model.standardize(data.to(model.loc.device).float())
    lo, hi = z.min(0).values.double().cpu(), z.max(0).values.double().cpu()
    pad = 0.1 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    reach = float(torch.maximum(lo.abs(), hi.abs()).max())
    r = width * model.tau + reach
    cells = max(2, int(math.ceil(2 * r / coarse_cell)))
    refine = max(2, int(math.ceil(coarse_cell / cell)))
    dev = model.loc.device

    def log_f(p: torch.Tensor) -> torch.Tensor:
        return -model.energy_z(p.to(dev)).cpu()

    inner = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
    fine = quadrature_log_normalizer(log_f, (-r, r, -r, r), inner, cells=cells, refine=refine)
    half = quadrature_log_normalizer(log_f, (-r, r, -r, r), inner, cells=cells, refine=max(1, refine // 2))
    shift = model.log_scale_sum()
    return {
        "log_z": fine["log_z"] + shift,
        "log_z_half": half["log_z"] + shift,
        "quadrature_error": abs(fine["log_z"] - half["log_z"]),
        "edge_mass": fine["edge_mass"],
        "refined_mass": fine["refined_mass"],
        "points": fine["points"] + half["points"],
    }


def sigmoid_schedule(num_steps: int, delta: float = 4.0) -> torch.Tensor:
    """Return ``num_steps + 1`` inverse temperatures from 0 to 1 (float64): the sigmoid schedule of
    Grosse et al. 2015."""
    if num_steps < 1:
        raise ValueError(f"AIS needs at least one step, got {num_steps}")
    s = torch.sigmoid(delta * (2 * torch.linspace(0, 1, num_steps + 1, dtype=torch.float64) - 1))
    return (s - s[0]) / (s[-1] - s[0])


def ais_log_normalizer(
    model: Any,
    *,
    num_chains: int = 100,
    num_runs: int = 5,
    num_steps: int = 1000,
    leapfrog_steps: int = 5,
    step_size: float = 0.05,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Return an AIS estimate of ``log Z`` (nats, data coordinates) of an energy model, with its spread.

    ``num_runs`` independent runs of ``num_chains`` chains each anneal from the base
    ``N(0, tau^2 I)`` (exact normalizer ``log Z_base``) to the model in ``num_steps``
    temperatures, one HMC transition (``leapfrog_steps`` leapfrog steps, Metropolis-corrected)
    per temperature. Returns ``log_z`` (log-mean-exp of all chains' weights plus ``log
    Z_base``), ``log_z_runs`` (each run's estimate), ``log_z_std`` (their standard
    deviation), ``log_z_stderr`` (``log_z_std / sqrt(num_runs)``), ``ess`` (effective sample
    size of the pooled weights), ``acceptance`` (mean HMC acceptance rate), ``step_size``
    (final), ``base`` (the base distribution, in words) and the settings. Seeded by ``seed``;
    the global RNG state is restored afterwards.
    """
    if num_chains < 1 or num_runs < 1:
        raise ValueError(f"num_chains and num_runs must be positive, got {num_chains}, {num_runs}")
    betas = sigmoid_schedule(num_steps)
    dev = model.loc.device
    tau2 = model.tau**2
    n = num_chains * num_runs

    def f_and_grad(z: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            f = model.net(z)
            u = 0.5 * z.pow(2).sum(-1) / tau2 + beta * f
            (g,) = torch.autograd.grad(u.sum(), z)
        return f.detach(), u.detach(), g

    was_training = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    acc_total, eps = 0.0, float(step_size)
    try:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            z = model.base_draw(n).to(dev)
            log_w = torch.zeros(n, dtype=torch.float64, device=dev)
            f, _, _ = f_and_grad(z, 0.0)
            for t in tqdm(range(1, num_steps + 1), desc="AIS", disable=not progress, leave=False):
                b_prev, b = float(betas[t - 1]), float(betas[t])
                log_w += -(b - b_prev) * f.double()
                # one HMC transition leaving p_b invariant
                _, u0, g = f_and_grad(z, b)
                p0 = torch.randn_like(z)
                zn, p = z.clone(), p0 - 0.5 * eps * g
                for i in range(leapfrog_steps):
                    zn = zn + eps * p
                    fn, un, g = f_and_grad(zn, b)
                    if i < leapfrog_steps - 1:
                        p = p - eps * g
                p = p - 0.5 * eps * g
                log_accept = (u0 - un) + 0.5 * (p0.pow(2).sum(-1) - p.pow(2).sum(-1))
                accept = torch.log(torch.rand_like(log_accept)) < log_accept
                accept &= torch.isfinite(log_accept)
                z = torch.where(accept[:, None], zn, z)
                f = torch.where(accept, fn, f)
                rate = float(accept.float().mean())
                acc_total += rate
                eps *= 1.02 if rate > 0.65 else 0.98
    finally:
        for p in params:
            p.requires_grad_(True)
        model.train(was_training)
    log_base = model.base_log_normalizer()
    lw = log_w.cpu().reshape(num_runs, num_chains)
    runs = (torch.logsumexp(lw, 1) - math.log(num_chains) + log_base).tolist()
    pooled = float(torch.logsumexp(lw.reshape(-1), 0) - math.log(n) + log_base)
    w = torch.softmax(lw.reshape(-1), 0)
    std = float(torch.tensor(runs).std()) if num_runs > 1 else float("nan")
    return {
        "log_z": pooled,
        "log_z_runs": runs,
        "log_z_std": std,
        "log_z_stderr": std / math.sqrt(num_runs) if num_runs > 1 else float("nan"),
        "ess": float(1.0 / w.pow(2).sum()),
        "acceptance": acc_total / num_steps,
        "step_size": eps,
        "base": f"N(loc, (tau * scale)^2), tau = {model.tau}",
        "num_chains": num_chains,
        "num_runs": num_runs,
        "num_steps": num_steps,
        "leapfrog_steps": leapfrog_steps,
    }


def dequantized_log_density(model: Any, x: torch.Tensor, samples: int = 8, seed: int = 0) -> torch.Tensor:
    """Return ``log-mean-exp over s of -E(v_s)`` per row of ``x`` ``(N,)`` (float64, nats, unnormalized).

    Images: ``v_s`` are ``samples`` uniform dequantizations of the pixels (from ``seed``) and
    ``- D log L`` is added, so that ``result - log Z`` bounds the log-probability of the
    discrete pixels from below in expectation; vectors: ``-E(x)`` itself.
    """
    dev = model.loc.device
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        if model.num_levels is None:
            return torch.cat(
                [-model.energy(x[i : i + 4096].to(dev)).double().cpu() for i in range(0, len(x), 4096)]
            )
        out = []
        for i in range(0, x.shape[0], 1024):
            xb = x[i : i + 1024].to(dev)
            vals = torch.stack([-model.energy(model.dequantize(xb)).double() for _ in range(samples)])
            out.append((torch.logsumexp(vals, 0) - math.log(samples)).cpu())
        d = x.shape[1]
        return torch.cat(out) - d * math.log(model.num_levels)
