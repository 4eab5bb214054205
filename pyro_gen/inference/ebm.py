"""Sampling an energy-based model with Pyro's own HMC and NUTS.

:meth:`~pyro_gen.models.ebm.EnergyModel.sampling_model` writes the model as a Pyro program
whose latent site ``x`` (``num_points`` independent points under a plate, flat prior) carries
the factor ``-E(x)``; :class:`pyro.infer.MCMC` then runs :class:`~pyro.infer.HMC` or
:class:`~pyro.infer.NUTS` on the potential Pyro derives from that trace (``E`` summed over
the points), adapting the step size (and a diagonal mass matrix) during warm-up.
"""

from __future__ import annotations

from typing import Any

import torch

KERNELS = ("nuts", "hmc")


def mcmc_sample(
    model: Any,
    num_samples: int,
    *,
    num_points: int = 16,
    kernel: str = "nuts",
    warmup_steps: int = 200,
    num_steps: int = 10,
    step_size: float = 0.1,
    init: torch.Tensor | None = None,
    seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """Return ``num_samples * num_points`` draws ``(num_samples * num_points, D)`` of an
    :class:`~pyro_gen.models.ebm.EnergyModel` by Pyro's MCMC, in data coordinates.

    ``num_points`` chains of the model run in parallel as one Pyro program (independent points
    under a plate); ``kernel`` is ``"nuts"`` or ``"hmc"`` (``num_steps`` leapfrog steps),
    ``warmup_steps`` adapt the step size (starting at ``step_size``) and the mass matrix.
    Chains start at ``init`` ``(num_points, D)`` (data coordinates) or at draws of the model's
    base distribution. Seeded by ``seed``; the global RNG state is restored afterwards.
    """
    import pyro
    from pyro.infer import HMC, MCMC, NUTS
    from pyro.infer.autoguide import init_to_value

    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if num_samples < 1 or num_points < 1:
        raise ValueError(f"num_samples and num_points must be positive, got {num_samples}, {num_points}")
    with torch.random.fork_rng():
        pyro.set_rng_seed(seed)
        if init is None:
            init = model.unstandardize(model.base_draw(num_points).to(model.loc.device))
        init = init.detach().reshape(num_points, -1)
        strategy = init_to_value(values={"x": init})
        if kernel == "nuts":
            mc_kernel = NUTS(model.sampling_model, step_size=step_size, init_strategy=strategy)
        else:
            mc_kernel = HMC(
                model.sampling_model, step_size=step_size, num_steps=num_steps, init_strategy=strategy
            )
        trainable = [p for p in model.parameters() if p.requires_grad]
        for p in trainable:
            p.requires_grad_(False)
        try:
            mcmc = MCMC(
                mc_kernel, num_samples=num_samples, warmup_steps=warmup_steps, disable_progbar=not progress
            )
            mcmc.run(num_points)
        finally:
            for p in trainable:
                p.requires_grad_(True)
        draws = mcmc.get_samples()["x"]
    return draws.reshape(-1, draws.shape[-1]).detach()
