"""The result shape every trainer returns (SVI, EM, adversarial), so comparisons never special-case."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FitResult:
    """What a trainer returns.

    ``history`` is a list of rows (dicts) logged during training; for SVI each row has
    ``step``, ``epoch``, ``train_elbo`` (nats per data point, averaged since the previous
    row), ``test_elbo`` (nats per data point or ``None``), ``seconds`` (training wall time so
    far, excluding evaluation) and ``lr``. ``seconds`` is the total training wall time.
    """

    model: Any
    history: list[dict[str, Any]]
    steps: int
    epochs: float
    seconds: float
    estimator: str
    guide: Any = None
    checkpoint: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def final_train_elbo(self) -> float | None:
        """Return the last logged train ELBO (nats per data point), or None."""
        vals = [r["train_elbo"] for r in self.history if r.get("train_elbo") is not None]
        return vals[-1] if vals else None

    @property
    def final_test_elbo(self) -> float | None:
        """Return the last logged held-out ELBO (nats per data point), or None."""
        vals = [r["test_elbo"] for r in self.history if r.get("test_elbo") is not None]
        return vals[-1] if vals else None

    def write_history(self, path: str | os.PathLike) -> Path:
        """Write the history as CSV (one row per log point) and return the path."""
        path = Path(path)
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            for row in self.history:
                w.writerow({k: ("" if row.get(k) is None else row[k]) for k in keys})
        return path
