"""What a reproduction declares: its rows and budgets (plain data, no torch)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: ``smoke`` exists for the tests (a few steps, few test points); ``quick`` fits the 2-core CPU
#: machine in about an hour per row; ``paper`` is the published protocol.
BUDGETS = ("smoke", "quick", "paper")


@dataclass(frozen=True)
class Metric:
    """An extra metric of a reproduction, shown in its own columns beside the main one.

    ``key`` is the key of the run's ``metrics.json`` that holds it; ours is ``scale *
    metrics[key]`` (``scale`` -1 flips a sign, 100 turns a fraction into a percentage).
    ``label`` heads its columns, ``fmt`` formats its numbers (a :func:`format` spec such as
    ``".2f"``), ``units`` names its units in the table's legend.
    """

    key: str
    label: str
    fmt: str = ".2f"
    scale: float = 1.0
    units: str = ""


@dataclass(frozen=True)
class Row:
    """One row of a published table.

    ``published`` is the paper's figure in the reproduction's units (None when it has none),
    ``tag`` its source tag from REFERENCES.md (``[P]``, ``[S]``, ``[R]``) and ``source`` where
    it comes from. ``family`` is the model family that runs it and ``settings(budget)``
    returns the run's settings sections (``run``, ``train``, ``trainer``, ``model``: the
    arguments of :func:`pyro_gen.runs.plan_run`). A row the project cannot run yet has
    ``unavailable`` set to the reason, and no family.

    ``seeds`` runs the row once per seed (a tuple of seeds, or a dict of one tuple per budget),
    each in its own run folder ``rows/ROW/seed-S`` with the training seed ``S``; the table shows
    the mean and the standard deviation over the seeds done. Empty (the default): one run in
    ``rows/ROW`` with the seed its settings give. ``published_extra`` maps the key of each
    of the reproduction's :attr:`Reproduction.extra_metrics` to the paper's figure (in that
    metric's scaled units; missing or None: the paper has none). ``data`` is the row's own data
    spec (e.g. ``ring``) when it needs no ``--data``; None: the reproduction's ``data``.
    """

    name: str
    label: str
    published: float | None
    tag: str
    source: str
    family: str | None = None
    settings: Callable[[str], dict[str, dict[str, Any]]] | None = None
    unavailable: str | None = None
    seeds: tuple[int, ...] | dict[str, tuple[int, ...]] = ()
    published_extra: dict[str, float | None] = field(default_factory=dict)
    data: str | None = None

    def seeds_for(self, budget: str) -> tuple[int, ...]:
        """Return the seeds the row runs at ``budget`` (empty: one run without a seed folder)."""
        seeds = self.seeds.get(budget, ()) if isinstance(self.seeds, dict) else self.seeds
        return tuple(int(s) for s in seeds)


@dataclass(frozen=True)
class Reproduction:
    """A published table: its rows, how ours is read from a run's metrics, and its budgets.

    ``metric_key`` is the key of the run's ``metrics.json`` that holds ours, multiplied by
    ``sign`` (``-1`` turns a log-likelihood into the negative log-likelihood the papers
    print). ``data`` names the data set (``mnist``: read from ``--data mnist:PATH`` or
    ``$PYRO_GEN_MNIST``). ``budgets`` maps each budget to a one-line description; ``notes``
    are where our protocol differs from the paper's (printed under the table).
    ``extra_metrics`` are further :class:`Metric` columns beside the main one (each row's
    published figure in :attr:`Row.published_extra`). ``likelihood`` says the runs are
    likelihood evaluations, whose table shows the k and test-point columns; without it the
    table shows the runs' steps instead. ``fmt`` formats the main metric's numbers.
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
    extra_metrics: tuple[Metric, ...] = ()
    likelihood: bool = True
    fmt: str = ".2f"

    def row(self, name: str) -> Row:
        """Return the row ``name``; ``ValueError`` naming it and the rows there are when unknown."""
        for row in self.rows:
            if row.name == name:
                return row
        raise ValueError(f"{self.name} has no row {name!r}; its rows: {', '.join(r.name for r in self.rows)}")
