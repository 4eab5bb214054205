"""What a reproduction declares: its rows and budgets (plain data, no torch)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: ``smoke`` exists for the tests (a few steps, few test points); ``quick`` fits the 2-core CPU
#: machine in about an hour per row; ``paper`` is the published protocol.
BUDGETS = ("smoke", "quick", "paper")


@dataclass(frozen=True)
class Row:
    """One row of a published table.

    ``published`` is the paper's figure in the reproduction's units (None when it has none),
    ``tag`` its source tag from REFERENCES.md (``[P]``, ``[S]``, ``[R]``) and ``source`` where
    it comes from. ``family`` is the model family that runs it and ``settings(budget)``
    returns the run's settings sections (``run``, ``train``, ``trainer``, ``model``: the
    arguments of :func:`pyro_gen.runs.plan_run`). A row the project cannot run yet has
    ``unavailable`` set to the reason, and no family.
    """

    name: str
    label: str
    published: float | None
    tag: str
    source: str
    family: str | None = None
    settings: Callable[[str], dict[str, dict[str, Any]]] | None = None
    unavailable: str | None = None


@dataclass(frozen=True)
class Reproduction:
    """A published table: its rows, how ours is read from a run's metrics, and its budgets.

    ``metric_key`` is the key of the run's ``metrics.json`` that holds ours, multiplied by
    ``sign`` (``-1`` turns a log-likelihood into the negative log-likelihood the papers
    print). ``data`` names the data set (``mnist``: read from ``--data mnist:PATH`` or
    ``$PYRO_GEN_MNIST``). ``budgets`` maps each budget to a one-line description; ``notes``
    are where our protocol differs from the paper's (printed under the table).
    """

    name: str
    title: str
    paper: str
    metric: str
    units: str
    metric_key: str
    sign: float
    data: str
    rows: tuple[Row, ...]
    budgets: dict[str, str]
    notes: tuple[str, ...] = ()
    budget_notes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    lower_is_better: bool = True

    def row(self, name: str) -> Row:
        """Return the row ``name``; ``ValueError`` naming it and the rows there are when unknown."""
        for row in self.rows:
            if row.name == name:
                return row
        raise ValueError(f"{self.name} has no row {name!r}; its rows: {', '.join(r.name for r in self.rows)}")
