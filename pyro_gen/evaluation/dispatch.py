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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.checks import as_data_tensor

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
        return as_data_tensor(data.test, "data.test"), data
    return as_data_tensor(data, "data"), None


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
    model: Any, x: torch.Tensor, batch_size: int, dequantization_samples: int | None, progress: bool
) -> Evaluation:
    """Exact (or dequantized) log-likelihood from the model's own density."""
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
    was = _eval_mode(model)
    per_point = torch.empty(x.shape[0], dtype=torch.float64)
    single = torch.empty(x.shape[0], dtype=torch.float64) if s > 1 else None
    bar = tqdm(total=x.shape[0], disable=not progress, desc="log-likelihood", unit="pt", leave=False)
    try:
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            per_point[start : start + xb.shape[0]] = torch.as_tensor(fn(xb)).detach().double().cpu()
            if single is not None:
                single[start : start + xb.shape[0]] = model.log_likelihood(xb, 1).double().cpu()
            bar.update(xb.shape[0])
    finally:
        bar.close()
        if was:
            model.train()
    ll = float(per_point.mean())
    has_pair = callable(getattr(model, "model", None)) and callable(getattr(model, "guide", None))
    # no latent variables: the model's ELBO is its log-likelihood (one dequantization for image flows)
    elbo = float(single.mean()) if single is not None else (ll if has_pair else None)
    metrics = {"dequantization_samples": s} if discrete_levels else {}
    return Evaluation("exact", ll, _bits_per_dim(ll, x), elbo, None, x.shape[0], 0.0, metrics, per_point)


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
        {},
        out["per_point"],
    )


def _samples(
    model: Any, x: torch.Tensor, split: Any, num_samples: int, seed: int, progress: bool
) -> Evaluation:
    from .samples import feature_classifier_for, frechet_distance, mode_metrics

    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2 for sample metrics, got {num_samples!r}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        samples = model.sample(num_samples)
    samples = torch.as_tensor(samples).detach().reshape(num_samples, -1).float().cpu()
    reference = x.reshape(x.shape[0], -1).float()
    info = (getattr(split, "info", None) or {}) if split is not None else {}
    metrics: dict[str, Any] = {"num_samples": num_samples}
    if "means" in info and "std" in info:
        metrics.update(mode_metrics(samples, torch.tensor(info["means"]), float(info["std"])))
    elif split is not None and getattr(split, "is_image", False) and split.train_labels is not None:
        clf = feature_classifier_for(split, seed=seed, progress=progress)
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
    seed: int = 0,
) -> Evaluation:
    """Score ``model`` on ``data``; return an :class:`Evaluation` (see the module docstring for the dispatch).

    ``data`` is a tensor ``(N, D)`` (or ``(N, C, H, W)``) or a :class:`~pyro_gen.data.DataSplit`,
    whose test split is evaluated (its ``info`` and labels feed the sample metrics). ``k`` is
    the number of importance samples per point (``batch_size``, ``chunk_size`` and
    ``memory_budget`` tune the blocks, see
    :func:`~pyro_gen.evaluation.likelihood.importance_log_likelihood`); ``batch_size`` is also
    the row block of exact densities (default 1024). ``dequantization_samples`` (image flows,
    default 16) averages that many dequantizations per point. ``num_samples`` model samples
    are drawn for sample metrics, with ``seed``. ``progress`` shows a tqdm bar.

    Raises ``ValueError`` naming the problem for empty data, NaN or infinite values, a shape
    the model does not take, ``k < 1``, or a model that offers no way to be scored.
    """
    t0 = time.perf_counter()
    x, split = _split_data(data)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    kind = evaluation_kind(model, guide)
    if kind == "exact":
        _check_shape(model, x)
        ev = _exact(model, x, batch_size or 1024, dequantization_samples, progress)
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
        )
    else:
        ev = _samples(model, x, split, num_samples, seed, progress)
    ev.seconds = time.perf_counter() - t0
    return ev
