"""``evaluate(model, data)``: one verb and one result type for every generative model.

The model decides how it can be scored, by what it offers (checked in this order):

* ``log_likelihood(x, num_samples)`` (normalizing flows): its own log-likelihood, exact for
  continuous data and, for image flows, averaged over ``dequantization_samples`` uniform
  dequantizations (a lower bound on the pixels' log-likelihood that tightens with their
  number). ``kind="exact"``.
* ``log_prob(x)`` or ``score_samples(x)`` (autoregressive models, Gaussian mixtures, ICA):
  the exact per-point log-density. ``kind="exact"``.
* ``model``/``guide`` (latent-variable models; or a model function with ``guide=``):
  importance sampling with ``k`` guide samples per point (the IWAE bound,
  :func:`~pyro_gen.evaluation.likelihood.importance_log_likelihood`). ``kind="importance"``.
* ``sample(n)`` only (GANs): sample metrics. Mode coverage when the data carry their modes
  (a :class:`~pyro_gen.data.DataSplit` whose ``info`` has ``means`` and ``std``: ring, grid),
  else the Frechet distance to the data, on features of a small classifier for labelled image
  splits (with the training images' distance as the floor) and on raw coordinates otherwise.
  ``kind="samples"``.

Data may be a tensor or a NumPy array, float32 or float64: it is checked and converted at the
boundary (:func:`~pyro_gen.data.checks.as_data_tensor`) and scored in the dtype of the
model's parameters. The per-point kinds (exact and importance) evaluate blocks of points, each
drawing from a random stream of its own seeded from ``seed`` and its first index, so that an
interrupted evaluation can be continued block by block (``completed``, ``on_block``) with the
numbers an uninterrupted one gives.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.checks import as_data_tensor
from .likelihood import BlockCallback, model_device, model_dtype, seeded_block

KINDS = ("exact", "importance", "samples")


@dataclass
class Evaluation:
    """What :func:`evaluate` returns, for every model.

    ``kind`` is ``"exact"``, ``"importance"`` or ``"samples"``. ``log_likelihood`` and
    ``elbo`` are in nats per data point (mean over the evaluated points; ``None`` where the
    model has none), ``bits_per_dim`` is ``-log_likelihood / (D ln 2)``, ``k`` the importance
    samples per point (importance sampling only), ``num_points`` the data points evaluated,
    ``seconds`` the wall seconds of the evaluation and ``metrics`` every other number (sample
    metrics, dequantization samples, ...). ``per_point`` holds the ``(N,)`` float64
    log-likelihoods where they exist (not part of :meth:`to_dict`).
    """

    kind: str
    log_likelihood: float | None
    bits_per_dim: float | None
    elbo: float | None
    k: int | None
    num_points: int
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)
    per_point: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Evaluation kind must be one of {KINDS}, got {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict (``per_point`` left out; ``metrics`` copied)."""
        out = asdict(self)
        out.pop("per_point")
        out["metrics"] = dict(self.metrics)
        return out

    def __getitem__(self, key: str) -> Any:
        """Return a field, or else a metric, by name (``ev["log_likelihood"]``, ``ev["modes_captured"]``)."""
        if key in self.__dataclass_fields__:
            return getattr(self, key)
        return self.metrics[key]


def _split_data(data: Any) -> tuple[torch.Tensor, Any]:
    """Return ``(test tensor, split or None)`` for a tensor, array or :class:`DataSplit`."""
    if hasattr(data, "test") and hasattr(data, "train"):
        return as_data_tensor(data.test, "data.test", dtype=None), data
    return as_data_tensor(data, "data", dtype=None), None


def _check_shape(model: Any, x: torch.Tensor) -> None:
    """Raise ``ValueError`` when ``x`` does not fit the model (its ``check_data``, or its ``dim``)."""
    if hasattr(model, "check_data"):
        model.check_data(x)
        return
    dim = getattr(model, "dim", None)
    if isinstance(dim, int) and (x.dim() != 2 or x.shape[1] != dim):
        raise ValueError(f"data must have shape (N, {dim}) for this model, got {tuple(x.shape)}")


def _bits_per_dim(ll: float, x: torch.Tensor) -> float:
    return -ll / (int(x[0].numel()) * math.log(2))


def _eval_mode(model: Any) -> bool:
    """Put an ``nn.Module`` in eval mode; return whether it was training."""
    was = bool(getattr(model, "training", False))
    if isinstance(model, torch.nn.Module):
        model.eval()
    return was


@torch.no_grad()
def _exact(
    model: Any,
    x: torch.Tensor,
    batch_size: int,
    dequantization_samples: int | None,
    progress: bool,
    seed: int | None = None,
    completed: Mapping[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    on_block: BlockCallback | None = None,
) -> Evaluation:
    """Exact (or dequantized) log-likelihood from the model's own density, ``batch_size`` rows a block."""
    flow_like = callable(getattr(model, "log_likelihood", None))
    discrete_levels = getattr(model, "num_levels", None) if flow_like else None
    s = 1
    if flow_like and discrete_levels:
        s = int(dequantization_samples or 16)
        if s < 1:
            raise ValueError(f"dequantization_samples must be a positive integer, got {s}")
    if flow_like:
        fn: Callable = lambda xb: model.log_likelihood(xb, s)  # noqa: E731
    elif callable(getattr(model, "log_prob", None)):
        fn = model.log_prob
    else:
        fn = model.score_samples
    has_pair = callable(getattr(model, "model", None)) and callable(getattr(model, "guide", None))
    was = _eval_mode(model)
    device = model_device(model if isinstance(model, torch.nn.Module) else None, x)
    n = x.shape[0]
    per_point = torch.empty(n, dtype=torch.float64)
    single = torch.empty(n, dtype=torch.float64)
    reuse = {
        start: old
        for start, old in (completed or {}).items()
        if start % batch_size == 0
        and 0 <= start < n
        and all(torch.as_tensor(v).shape == (min(n, start + batch_size) - start,) for v in old)
    }
    bar = tqdm(
        total=n,
        initial=sum(min(n, st + batch_size) - st for st in reuse),
        disable=not progress,
        desc="log-likelihood",
        unit="pt",
        leave=False,
    )
    try:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            if start in reuse:
                per_point[start:stop] = torch.as_tensor(reuse[start][0], dtype=torch.float64)
                single[start:stop] = torch.as_tensor(reuse[start][1], dtype=torch.float64)
                continue
            t0 = time.perf_counter()
            xb = x[start:stop]
            with seeded_block(seed, start, device):
                per_point[start:stop] = torch.as_tensor(fn(xb)).detach().double().cpu()
                if s > 1:
                    single[start:stop] = model.log_likelihood(xb, 1).double().cpu()
                else:
                    single[start:stop] = per_point[start:stop]
            if on_block is not None:
                on_block(
                    start, per_point[start:stop].clone(), single[start:stop].clone(), time.perf_counter() - t0
                )
            bar.update(stop - start)
    finally:
        bar.close()
        if was:
            model.train()
    ll = float(per_point.mean())
    # no latent variables: the model's ELBO is its log-likelihood (one dequantization for image flows)
    elbo = float(single.mean()) if s > 1 else (ll if has_pair else None)
    metrics: dict[str, Any] = {"block_points": batch_size}
    if discrete_levels:
        metrics["dequantization_samples"] = s
    return Evaluation("exact", ll, _bits_per_dim(ll, x), elbo, None, n, 0.0, metrics, per_point)


def _importance(
    model: Any, x: torch.Tensor, guide: Callable | None, k: int, progress: bool, **kw
) -> Evaluation:
    from .likelihood import importance_log_likelihood

    out = importance_log_likelihood(model, x, guide=guide, k=k, progress=progress, **kw)
    return Evaluation(
        "importance",
        out["log_likelihood"],
        out["bits_per_dim"],
        out["elbo"],
        k,
        out["num_points"],
        0.0,
        dict(out["blocks"]),
        out["per_point"],
    )


def _samples(
    model: Any, x: torch.Tensor, split: Any, num_samples: int, seed: int | None, progress: bool
) -> Evaluation:
    from .samples import feature_classifier_for, frechet_distance, mode_metrics

    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2 for sample metrics, got {num_samples!r}")
    with torch.random.fork_rng():
        torch.manual_seed(0 if seed is None else seed)
        samples = model.sample(num_samples)
    samples = torch.as_tensor(samples).detach().reshape(num_samples, -1).float().cpu()
    reference = x.reshape(x.shape[0], -1).float()
    info = (getattr(split, "info", None) or {}) if split is not None else {}
    metrics: dict[str, Any] = {"num_samples": num_samples}
    if "means" in info and "std" in info:
        metrics.update(mode_metrics(samples, torch.tensor(info["means"]), float(info["std"])))
    elif split is not None and getattr(split, "is_image", False) and split.train_labels is not None:
        clf = feature_classifier_for(split, seed=0 if seed is None else seed, progress=progress)
        metrics["frechet_distance"] = frechet_distance(samples, reference, clf.features)
        # the floor: as many training images against the same reference
        floor = split.train[: min(num_samples, split.train.shape[0])].reshape(-1, reference.shape[1]).float()
        metrics["frechet_distance_train_vs_test"] = frechet_distance(floor, reference, clf.features)
        metrics["feature_classifier_accuracy"] = clf.accuracy_
    else:
        metrics["frechet_distance_raw"] = frechet_distance(samples, reference)
    return Evaluation("samples", None, None, None, None, x.shape[0], 0.0, metrics)


def evaluation_kind(model: Any, guide: Callable | None = None) -> str:
    """Return how :func:`evaluate` scores ``model``: ``"exact"``, ``"importance"`` or ``"samples"``.

    ``ValueError`` when the model offers none of a density, a model/guide pair or ``sample``.
    """
    if guide is None and any(
        callable(getattr(model, name, None)) for name in ("log_likelihood", "log_prob", "score_samples")
    ):
        return "exact"
    if guide is not None or (
        callable(getattr(model, "model", None)) and callable(getattr(model, "guide", None))
    ):
        return "importance"
    if callable(getattr(model, "sample", None)):
        return "samples"
    raise ValueError(
        f"cannot evaluate a {type(model).__name__}: it has no log_likelihood/log_prob, no model/guide "
        "pair (or pass guide=), and no sample(n)"
    )


def evaluate(
    model: Any,
    data: Any,
    *,
    k: int = 5000,
    guide: Callable | None = None,
    progress: bool = False,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    dequantization_samples: int | None = None,
    num_samples: int = 2500,
    seed: int | None = 0,
    completed: Mapping[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    on_block: BlockCallback | None = None,
) -> Evaluation:
    """Score ``model`` on ``data``; return an :class:`Evaluation` (see the module docstring for the dispatch).

    ``data`` is a tensor or NumPy array ``(N, D)`` (or ``(N, C, H, W)``), float32 or float64,
    or a :class:`~pyro_gen.data.DataSplit`, whose test split is evaluated (its ``info`` and
    labels feed the sample metrics). ``k`` is the number of importance samples per point
    (``batch_size``, ``chunk_size`` and ``memory_budget`` fix the blocks, chosen for the
    machine otherwise: see :func:`~pyro_gen.evaluation.likelihood.choose_block_sizes`; the
    sizes used are in ``metrics``: ``block_points``, ``block_samples``, ``block_bytes``,
    ``block_choice``); ``batch_size`` is also the row block of exact densities (default
    1024). ``dequantization_samples`` (image flows, default 16) averages that many
    dequantizations per point. ``num_samples`` model samples are drawn for sample metrics.

    ``seed`` seeds the evaluation: every block of points of the exact and importance kinds
    draws from its own stream (from ``seed`` and the block's first index; ``None``: the global
    stream, as it is), the sample metrics draw from ``seed`` (``None``: 0); the global streams
    are left as they were. ``completed`` maps a block's first index to the ``(log_likelihood,
    elbo)`` per-point values an earlier, interrupted evaluation with the same seed, ``k`` and
    blocks computed (they are reused, not recomputed); ``on_block(start, log_likelihood,
    elbo, seconds)`` is called after every computed block. ``progress`` shows a tqdm bar.

    Raises ``ValueError`` naming the problem for empty data, NaN or infinite values, a shape
    the model does not take, ``k < 1``, a negative seed, or a model that offers no way to be
    scored.
    """
    t0 = time.perf_counter()
    x, split = _split_data(data)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    kind = evaluation_kind(model, guide)
    x = x.to(model_dtype(model, x))  # float64 data scored by a float32 model, and back
    if kind == "exact":
        _check_shape(model, x)
        block = batch_size or 1024
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ValueError(f"batch_size must be a positive integer, got {block!r}")
        ev = _exact(model, x, block, dequantization_samples, progress, seed, completed, on_block)
    elif kind == "importance":
        ev = _importance(
            model,
            x,
            guide,
            k,
            progress,
            batch_size=batch_size,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            seed=seed,
            completed=completed,
            on_block=on_block,
        )
    else:
        ev = _samples(model, x, split, num_samples, seed, progress)
    ev.seconds = time.perf_counter() - t0
    return ev
