"""The one result every trainer returns: gradient training (SVI, adversarial, plain loss), EM and NUTS.

The fields mean the same thing for every kind, so comparisons never special-case a trainer:

* ``steps``: updates of the fitted state: optimizer steps (for the adversarial game, generator
  steps; the critic's inner steps are part of one step), EM iterations (all restarts), or
  MCMC transitions (warm-up and draws, all chains).
* ``epochs``: passes over the training data those updates amount to (``steps * batch / N``;
  full-data algorithms such as EM and NUTS: one per step).
* ``seconds``: wall-clock seconds spent in the updates themselves, measured around them
  (device synchronized where one is used); evaluation, callbacks and checkpoints are not in it.
* ``cpu_seconds``: process CPU seconds of the same updates (all threads).
* ``eval_seconds``: wall seconds spent in evaluation and callbacks during training.

History rows are dicts with at least the keys of :class:`HistoryRow`; each kind adds its own
(:class:`SVIRow`, :class:`AdversarialRow`, :class:`LossRow`, :class:`EMRow`, :class:`NUTSRow`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

KINDS = ("svi", "adversarial", "loss", "em", "nuts")


class HistoryRow(TypedDict, total=False):
    """Keys every history row carries; the times are cumulative since the start of the run."""

    step: int  # updates so far
    epoch: float  # passes over the training data so far
    seconds: float  # training wall seconds so far (never decreases)
    cpu_seconds: float  # training CPU seconds so far
    eval_seconds: float  # evaluation and callback wall seconds so far


class SVIRow(HistoryRow, total=False):
    """SVI rows: ELBOs in nats per data point (train: mean since the previous row)."""

    train_elbo: float
    test_elbo: float | None
    lr: float


class LossRow(HistoryRow, total=False):
    """Plain-loss rows (autoencoders): the model's loss per data point."""

    train_loss: float
    test_loss: float | None
    lr: float


class AdversarialRow(HistoryRow, total=False):
    """Adversarial rows: the players' losses (the loss's own units), mean critic logits, gradient norm."""

    d_loss: float
    g_loss: float
    d_real: float
    d_fake: float
    g_grad_norm: float
    lr: float


class EMRow(HistoryRow, total=False):
    """EM rows: the training log-likelihood in nats per data point after the iteration."""

    log_likelihood: float
    restart: int


class NUTSRow(HistoryRow, total=False):
    """NUTS rows: one per chain, with its divergent transitions and mean acceptance probability."""

    chain: int
    divergences: int
    accept_prob: float


@dataclass
class FitResult:
    """What every trainer returns (see the module docstring for the meaning of each number).

    ``kind`` is one of :data:`KINDS`. ``estimator`` names the objective (an ELBO, an
    adversarial loss, ``em``, ``nuts``). ``checkpoint`` is the last checkpoint written, if
    any; ``params`` holds kind-specific results (posterior draws, fitted parameters, ...).
    ``threads`` is the number of torch threads and ``device`` where training ran.
    ``step_ms`` summarises the per-step wall times in milliseconds (``median``, ``p10``,
    ``p90``, ``n``) where the trainer measured them. ``notes`` are lines a user should read
    (e.g. a compiled estimator that ran uncompiled, and why).
    """

    model: Any
    history: list[dict[str, Any]]
    steps: int
    epochs: float
    seconds: float
    estimator: str
    kind: str = "svi"
    guide: Any = None
    checkpoint: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    eval_seconds: float = 0.0
    threads: int = 1
    device: str = "cpu"
    step_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"FitResult kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def ms_per_step(self) -> float:
        """Return training wall milliseconds per step (``1000 * seconds / steps``)."""
        return 1000.0 * self.seconds / max(1, self.steps)

    @property
    def cpu_ms_per_step(self) -> float:
        """Return training CPU milliseconds per step (``1000 * cpu_seconds / steps``)."""
        return 1000.0 * self.cpu_seconds / max(1, self.steps)

    def _last(self, key: str) -> float | None:
        vals = [r[key] for r in self.history if r.get(key) is not None]
        return vals[-1] if vals else None

    @property
    def final_train_elbo(self) -> float | None:
        """Return the last logged train ELBO (nats per data point), or None."""
        return self._last("train_elbo")

    @property
    def final_test_elbo(self) -> float | None:
        """Return the last logged held-out ELBO (nats per data point), or None."""
        return self._last("test_elbo")

    def write_history(self, path: str | os.PathLike) -> Path:
        """Write the history as CSV (one row per log point) with :mod:`pyro_gen.report`; return the path."""
        from ..report.files import write_history_csv

        return write_history_csv(self.history, path)
