"""Turn any pyro-gen fit into ArviZ ``InferenceData``: NUTS fits, MCMC runs, SVI guides, amortized encoders.

``az.from_pyro`` only accepts a ``pyro.infer.MCMC`` run and leaves dimension names to the
caller. Here every fit goes through one path that reads the names off the model itself:

* a **batch dimension** of a site is named after the ``pyro.plate`` that owns it
  (``"data"`` for every per-data-point site of a pyro-gen model);
* an **event dimension** is named ``"<site>_dim_<i>"``;
* dimensions of size one that no plate owns (a global latent broadcast against the data
  plate) are squeezed.

Groups written: ``posterior`` (latent sites), ``posterior_predictive`` (the observed sites
drawn again given each posterior draw), ``log_likelihood`` (log p(x_n | z) per observed site,
pointwise over the data plate so ``az.loo`` works), ``observed_data`` and ``sample_stats``
(MCMC: divergences and whatever extra fields the run recorded; guides: ``lp`` = log p(x, z)
and ``log_weight`` = log p(x, z) - log q(z | x), in nats, per data point when every site lies in
the data plate, otherwise per draw).

The groups are built as ``xarray.Dataset`` objects with ``az.dict_to_dataset`` and put
together by :func:`assemble`, the one place that knows which ArviZ line is installed: on
ArviZ 0.x it returns ``az.InferenceData``, on ArviZ 1.x an ``xarray.DataTree`` (same group
names; ArviZ 1.x has no ``from_pyro`` and its statistics take a DataTree).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pyro
import pyro.poutine as poutine
import torch
import xarray as xr
from pyro.infer import MCMC, Predictive
from pyro.poutine.util import site_is_subsample

from ..inference.mcmc import pointwise_log_likelihood
from ..inference.result import FitResult
from ..inference.svi import resolve_pair
from ..inference.traces import max_plate_nesting, sum_log_prob
from ..models.base import DATA_PLATE

ARVIZ_1 = int(az.__version__.split(".")[0]) >= 1
PARTICLES = "_draws"
GROUPS = ("posterior", "posterior_predictive", "log_likelihood", "observed_data", "sample_stats")


# --------------------------------------------------------------------------- ArviZ seam
def _dataset(
    data: dict[str, np.ndarray], dims: dict[str, list[str]], coords: dict | None, sampled: bool
) -> xr.Dataset:
    """One group as an ``xarray.Dataset``; ``sampled`` groups lead with (chain, draw)."""
    return az.dict_to_dataset(
        data,
        library=pyro,
        coords=coords,
        dims=dims,
        default_dims=None if sampled else [],
        index_origin=0,
    )


def assemble(groups: dict[str, xr.Dataset], attrs: dict | None = None) -> Any:
    """Put group datasets together: ``az.InferenceData`` on ArviZ 0.x, ``xarray.DataTree`` on 1.x.

    This is the only function that depends on the ArviZ line; everything else builds plain
    ``xarray.Dataset`` groups.
    """
    groups = {k: v for k, v in groups.items() if v is not None and len(v.data_vars)}
    if attrs:
        for ds in groups.values():
            ds.attrs.update({k: str(v) for k, v in attrs.items()})
    if ARVIZ_1:  # pragma: no cover - ArviZ 1.x needs Python >= 3.12; not installed here
        return xr.DataTree.from_dict({f"/{k}": v for k, v in groups.items()})
    return az.InferenceData(**groups)


def save_inference_data(idata: Any, path: str | os.PathLike) -> Path:
    """Write ``idata`` to a netCDF file (h5netcdf engine); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if ARVIZ_1:  # pragma: no cover
        idata.to_netcdf(path, engine="h5netcdf")
    else:
        idata.to_netcdf(str(path))
    return path


def load_inference_data(path: str | os.PathLike) -> Any:
    """Read an InferenceData (ArviZ 0.x) or DataTree (1.x) written by :func:`save_inference_data`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no InferenceData file at {path}")
    if ARVIZ_1:  # pragma: no cover
        return xr.open_datatree(path, engine="h5netcdf").load()
    return az.from_netcdf(str(path))


# --------------------------------------------------------------------------- naming
def _plates(site: dict) -> dict[int, str]:
    """``{dim: plate name}`` of the vectorized plates around ``site`` (the draw plate excluded)."""
    return {
        f.dim: f.name
        for f in site["cond_indep_stack"]
        if f.vectorized and f.dim is not None and f.name != PARTICLES
    }


def _sample_sites(trace) -> dict[str, dict]:
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    }


def _name_batch(
    name: str, value: torch.Tensor, event_dim: int, plates: dict[int, str], nesting: int, drawn: bool
):
    """Return ``(array, dim names)``: batch dims named by plates, unowned size-1 dims squeezed.

    With ``drawn`` the leading dim (at ``-nesting - 1`` of the batch shape) is the draw dim and
    is kept unnamed in front.
    """
    value = value.detach().cpu()
    batch_len = value.dim() - event_dim
    width = nesting + 1 if drawn else nesting
    if batch_len > width:
        raise ValueError(f"site {name!r} has more batch dims than the model's plates allow")
    value = value.reshape((1,) * (width - batch_len) + tuple(value.shape))
    keep, names = [], []
    for i in range(width):
        dim = i - width
        if drawn and i == 0:
            keep.append(i)
            continue
        if dim in plates:
            keep.append(i)
            names.append(plates[dim])
        elif value.shape[i] != 1:
            keep.append(i)
            names.append(f"{name}_batch_{i}")
    squeeze = [i for i in range(width) if i not in keep]
    arr = value.numpy()
    if squeeze:
        arr = arr.squeeze(axis=tuple(squeeze))
    names += [f"{name}_dim_{j}" for j in range(event_dim)]
    return arr, names


def _site_log_prob(site: dict) -> torch.Tensor:
    return site["fn"].log_prob(site["value"])


def _reduce_to(lp: torch.Tensor, plates: dict[int, str], nesting: int, per_point: bool) -> torch.Tensor:
    """Sum a ``log_prob`` batch tensor to ``(S,)`` or, with ``per_point``, to ``(S, N)``."""
    data_dim = next(d for d, n in plates.items() if n == DATA_PLATE) if per_point else None
    return sum_log_prob(lp, -nesting - 1, data_dim)


# --------------------------------------------------------------------------- guides
@torch.no_grad()
def _draw_from_guide(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    num_samples: int,
    nesting: int,
    posterior_predictive: bool,
    log_likelihood: bool,
) -> dict[str, dict[str, tuple[np.ndarray, list[str]]]]:
    """Draw ``num_samples`` latents from ``guide`` in one vectorized pass; return named arrays per group."""
    particles = pyro.plate(PARTICLES, num_samples, dim=-nesting - 1)
    gtr = poutine.trace(particles(guide)).get_trace(*args, **kwargs)
    mtr = poutine.trace(poutine.replay(particles(model), trace=gtr)).get_trace(*args, **kwargs)
    gsites, msites = _sample_sites(gtr), _sample_sites(mtr)
    latent = [n for n, s in msites.items() if not s["is_observed"]]
    observed = [n for n, s in msites.items() if s["is_observed"]]
    missing = [n for n in latent if n not in gsites]
    if missing:
        raise ValueError(f"the guide has no site for the model's latent sites {missing}")
    out: dict[str, dict] = {g: {} for g in GROUPS}
    for n in latent:
        s = msites[n]
        out["posterior"][n] = _name_batch(n, s["value"], s["fn"].event_dim, _plates(s), nesting, True)
    for n in observed:
        s = msites[n]
        out["observed_data"][n] = _name_batch(n, s["value"], s["fn"].event_dim, _plates(s), nesting, False)
        if log_likelihood:
            lp = _site_log_prob(s)
            out["log_likelihood"][n] = _name_batch(n, lp, 0, _plates(s), nesting, True)
    if posterior_predictive and observed:
        ptr = poutine.trace(poutine.replay(particles(poutine.uncondition(model)), trace=gtr)).get_trace(
            *args, **kwargs
        )
        for n in observed:
            s = ptr.nodes[n]
            arr, names = _name_batch(n, s["value"], s["fn"].event_dim, _plates(s), nesting, True)
            if arr.shape[0] != num_samples:  # the predictive does not depend on the draw
                arr = np.broadcast_to(arr, (num_samples,) + arr.shape[1:]).copy()
            out["posterior_predictive"][n] = (arr, names)
    # log p(x, z) and log p(x, z) - log q(z | x): per data point when every site lives in the
    # data plate (amortized guides), else one number per draw.
    per_point = all(DATA_PLATE in _plates(s).values() for s in list(msites.values()) + list(gsites.values()))
    lp = sum(_reduce_to(_site_log_prob(s), _plates(s), nesting, per_point) for s in msites.values())
    lq = sum(_reduce_to(_site_log_prob(gsites[n]), _plates(gsites[n]), nesting, per_point) for n in latent)
    names = [DATA_PLATE] if per_point else []
    out["sample_stats"]["lp"] = (lp.expand(num_samples, *lp.shape[1:]).numpy(), names)
    out["sample_stats"]["log_weight"] = ((lp - lq).expand(num_samples, *lp.shape[1:]).numpy(), names)
    return out


def _stack_chains(runs: list[dict], num_chains_each: int) -> dict[str, tuple[dict, dict]]:
    """Reshape draws to ``(chain, draw, ...)`` and concatenate runs along the chain dim."""
    groups: dict[str, tuple[dict, dict]] = {}
    for g in GROUPS:
        data, dims = {}, {}
        for name in runs[0][g]:
            arrays = []
            for run in runs:
                arr, names = run[g][name]
                if g == "observed_data":
                    arrays = [arr]
                    break
                arrays.append(arr.reshape(num_chains_each, arr.shape[0] // num_chains_each, *arr.shape[1:]))
            data[name] = arrays[0] if g == "observed_data" else np.concatenate(arrays, axis=0)
            dims[name] = names
        groups[g] = (data, dims)
    return groups


def from_guide(
    model: Any,
    guide: Callable | None = None,
    data: torch.Tensor | None = None,
    *,
    runs: Sequence[Any] | None = None,
    num_samples: int = 500,
    num_chains: int = 1,
    args: tuple = (),
    kwargs: dict | None = None,
    posterior_predictive: bool = True,
    log_likelihood: bool = True,
    coords: dict | None = None,
    seed: int | None = None,
) -> Any:
    """Return the InferenceData of a variational posterior (an SVI guide or an amortized encoder).

    ``model`` is an object with ``.model``/``.guide`` (e.g. a VAE) or a model function given
    with ``guide``. The model and guide are called with ``data`` (or ``*args``). Each chain
    holds ``num_samples`` draws from the guide; a single guide gives ``num_chains``
    independent chains, while ``runs`` (several ``FitResult`` objects or ``(model, guide)``
    pairs, e.g. SVI runs from different seeds) gives one chain per run, so R-hat across chains
    measures how much the runs disagree. Each run must own its parameters (an ``nn.Module``
    guide, a VAE, or AutoGuides under ``pyro.settings.set(module_local_params=True)``):
    guides reading ``pyro.param`` sites of one shared param store would all draw from the
    last run. Latents inside the data plate (amortized encoders)
    get a ``data`` dimension. Log densities are in nats.
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if not isinstance(num_chains, int) or num_chains < 1:
        raise ValueError(f"num_chains must be a positive integer, got {num_chains!r}")
    if data is not None:
        args = (data,)
    kwargs = dict(kwargs or {})
    if runs is not None:
        if len(runs) == 0:
            raise ValueError("runs is empty: give at least one fitted run")
        pairs = [_pair_of(r) for r in runs]
        per_chain = 1
    else:
        pairs = [resolve_pair(model, guide)]
        per_chain = num_chains
    if seed is not None:
        pyro.set_rng_seed(seed)
    drawn = []
    for model_fn, guide_fn, module in pairs:
        was_training = module.training if module is not None else False
        if module is not None:
            module.eval()
        try:
            nesting = max_plate_nesting(model_fn, guide_fn, args, kwargs)
            drawn.append(
                _draw_from_guide(
                    model_fn,
                    guide_fn,
                    args,
                    kwargs,
                    num_samples * per_chain,
                    nesting,
                    posterior_predictive,
                    log_likelihood,
                )
            )
        finally:
            if module is not None and was_training:
                module.train()
    groups = _stack_chains(drawn, per_chain)
    datasets = {g: _dataset(d, dims, coords, sampled=g != "observed_data") for g, (d, dims) in groups.items()}
    return assemble(datasets, {"inference": "variational", "num_runs": len(pairs)})


def _pair_of(run: Any) -> tuple[Callable, Callable, torch.nn.Module | None]:
    if isinstance(run, FitResult):
        return resolve_pair(run.model, run.guide)
    if isinstance(run, tuple) and len(run) == 2:
        return resolve_pair(run[0], run[1])
    return resolve_pair(run)


# --------------------------------------------------------------------------- MCMC
def _dims_from_model(model: Callable, args: tuple, kwargs: dict) -> dict[str, list[str]]:
    """Dimension names of every sample site of one (unvectorized) model run."""
    tr = poutine.trace(model).get_trace(*args, **kwargs)
    sites = _sample_sites(tr)
    nesting = max((-d for s in sites.values() for d in _plates(s)), default=0)
    dims = {}
    for n, s in sites.items():
        value = s["value"]
        event_dim = s["fn"].event_dim
        batch = value.dim() - event_dim
        plates = _plates(s)
        names = []
        for i in range(batch):
            dim = i - batch
            names.append(plates.get(dim, f"{n}_batch_{nesting + dim}"))
        dims[n] = names + [f"{n}_dim_{j}" for j in range(event_dim)]
    return dims


@torch.no_grad()
def _mcmc_log_joint(model: Callable, mcmc: MCMC, args: tuple, kwargs: dict) -> np.ndarray:
    """log p(x, z) of every posterior draw (nats), from one vectorized trace of the model."""
    samples = mcmc.get_samples()
    num = next(iter(samples.values())).shape[0]
    trace = Predictive(model, posterior_samples=samples).get_vectorized_trace(*args, **kwargs)
    total = torch.zeros(num, dtype=torch.float64)
    for site in _sample_sites(trace).values():
        lp = site["fn"].log_prob(site["value"])
        frame = next(f for f in site["cond_indep_stack"] if f.name == "_num_predictive_samples")
        lp = lp.reshape((1,) * max(0, -frame.dim - lp.dim()) + tuple(lp.shape))
        lp = lp.movedim(lp.dim() + frame.dim, 0).expand(num, *[-1] * (lp.dim() - 1))
        total += lp.reshape(num, -1).sum(-1).double()
    return total.numpy()


def from_mcmc(
    mcmc: MCMC,
    *,
    posterior_predictive: bool = True,
    log_likelihood: bool = True,
    coords: dict | None = None,
    dims: dict | None = None,
) -> Any:
    """Return the InferenceData of a finished ``pyro.infer.MCMC`` run.

    Built on ``az.from_pyro`` and filled where it leaves gaps: dimension names from the
    model's plates and site names (``from_pyro`` only takes them by hand), a
    ``posterior_predictive`` group (the observed sites redrawn for every posterior draw),
    ``sample_stats.lp`` (log p(x, z) of every draw, nats) next to ``diverging``, and each
    chain's acceptance rate in ``sample_stats.attrs["acceptance_rate"]``.
    """
    if not isinstance(mcmc, MCMC):
        raise ValueError(f"from_mcmc needs a pyro.infer.MCMC run, got {type(mcmc).__name__}")
    if not getattr(mcmc, "_samples", None):
        raise ValueError("the MCMC object has no samples: call mcmc.run(...) first")
    model = mcmc.kernel.model
    args, kwargs = mcmc._args, mcmc._kwargs  # noqa: SLF001 (az.from_pyro reads the same)
    all_dims = _dims_from_model(model, args, kwargs)
    all_dims.update(dims or {})
    pp = None
    if posterior_predictive:
        samples = mcmc.get_samples()
        observed = [
            n
            for n, s in _sample_sites(poutine.trace(model).get_trace(*args, **kwargs)).items()
            if s["is_observed"]
        ]
        if observed:
            pred = Predictive(poutine.uncondition(model), posterior_samples=samples, return_sites=observed)
            pp = {k: v.detach().cpu() for k, v in pred(*args, **kwargs).items()}
    idata = az.from_pyro(
        mcmc,
        posterior_predictive=pp,
        log_likelihood=log_likelihood,
        coords=coords,
        dims=all_dims,
    )
    lp = _mcmc_log_joint(model, mcmc, args, kwargs)
    idata.sample_stats["lp"] = (("chain", "draw"), lp.reshape(idata.posterior.sizes["chain"], -1))
    diag = mcmc.diagnostics()
    rates = diag.get("acceptance rate", {})
    if rates:
        idata.sample_stats.attrs["acceptance_rate"] = [float(rates[c]) for c in sorted(rates)]
    return idata


# --------------------------------------------------------------------------- NUTS fits
NUTS_DIMS = {
    "weights": ["component"],
    "locs": ["component", "dim"],
    "scales": ["component", "dim"],
    "corr_chol": ["component", "dim", "dim_b"],
}


@torch.no_grad()
def from_nuts(result: FitResult, data: torch.Tensor | None = None, *, coords: dict | None = None) -> Any:
    """Return the InferenceData of a :func:`~pyro_gen.inference.mcmc.fit_nuts` result (``kind="nuts"``).

    ``posterior`` holds the label-aligned draws (dims ``chain``, ``draw``, ``component``,
    ``dim``, ...); ``sample_stats.diverging`` the divergent transitions per draw where the fit
    recorded them. With ``data`` (the points the fit saw, or held-out points) it adds
    ``log_likelihood.obs`` = log p(x_n | theta) per draw, dims (chain, draw, data), in nats,
    and ``observed_data.obs``, so PSIS-LOO works.
    """
    if result.kind != "nuts" or "samples" not in result.params:
        raise ValueError(
            f"from_nuts needs a FitResult of kind 'nuts' with posterior samples, got {result.kind!r}"
        )
    draws = result.params["samples"]
    posterior = {name: v.detach().cpu().numpy() for name, v in draws.items()}
    dims = {n: d for n, d in NUTS_DIMS.items() if n in posterior}
    groups = {"posterior": _dataset(posterior, dims, coords, sampled=True)}
    if "diverging" in result.params:
        groups["sample_stats"] = _dataset(
            {"diverging": np.asarray(result.params["diverging"], dtype=bool)}, {}, coords, sampled=True
        )
    if data is not None:
        x = torch.as_tensor(data)
        ll = pointwise_log_likelihood(result.model, draws, x)
        groups["log_likelihood"] = _dataset({"obs": ll.numpy()}, {"obs": [DATA_PLATE]}, coords, sampled=True)
        groups["observed_data"] = _dataset(
            {"obs": x.double().numpy()}, {"obs": [DATA_PLATE, "dim"]}, coords, sampled=False
        )
    return assemble(groups, {"inference": "nuts"})


# --------------------------------------------------------------------------- dispatch
def to_inference_data(
    source: Any,
    data: torch.Tensor | None = None,
    *,
    guide: Callable | None = None,
    num_samples: int = 500,
    num_chains: int = 1,
    posterior_predictive: bool = True,
    log_likelihood: bool = True,
    coords: dict | None = None,
    seed: int | None = None,
    **kw: Any,
) -> Any:
    """Return ArviZ InferenceData for any fit (ArviZ 0.x ``InferenceData``, 1.x ``DataTree``).

    ``source`` is

    * a ``FitResult`` of kind ``"nuts"`` (:func:`~pyro_gen.inference.mcmc.fit_nuts`): its
      aligned draws, see :func:`from_nuts` (``data`` adds the pointwise log-likelihood);
    * a ``pyro.infer.MCMC`` run: see :func:`from_mcmc`;
    * a ``FitResult`` of another kind with a guide (``"svi"``): ``num_samples`` guide draws per
      chain, see :func:`from_guide`;
    * a list of ``FitResult`` (or of ``(model, guide)`` pairs) from independent SVI runs,
      which become chains; a ``(model, guide)`` pair; a model object with ``.model``/``.guide``
      (a VAE: the encoder's per-data-point posteriors); or a model function with ``guide=``.

    ``ValueError`` for a source that has none of these.
    """
    if isinstance(source, MCMC):
        return from_mcmc(
            source,
            posterior_predictive=posterior_predictive,
            log_likelihood=log_likelihood,
            coords=coords,
            **kw,
        )
    if isinstance(source, FitResult) and source.kind == "nuts":
        return from_nuts(source, data if log_likelihood else None, coords=coords)
    common = dict(
        num_samples=num_samples,
        posterior_predictive=posterior_predictive,
        log_likelihood=log_likelihood,
        coords=coords,
        seed=seed,
        **kw,
    )
    if isinstance(source, tuple) and len(source) == 2 and not isinstance(source[1], FitResult | tuple):
        return from_guide(source[0], source[1], data, num_chains=num_chains, **common)  # (model, guide)
    if isinstance(source, list | tuple):
        return from_guide(None, data=data, runs=list(source), **common)
    if isinstance(source, FitResult):
        if source.guide is None and guide is None and not callable(getattr(source.model, "guide", None)):
            raise ValueError(
                f"a FitResult of kind {source.kind!r} without a guide has no posterior to convert"
            )
        return from_guide(source.model, guide or source.guide, data, num_chains=num_chains, **common)
    return from_guide(source, guide, data, num_chains=num_chains, **common)
