"""Reproductions of published tables: ``pyro-gen reproduce NAME`` and ``pyro-gen reproduce --list``.

One module per table declares a :class:`Reproduction`: its rows (published value, source tag,
model family, run settings per budget) and its budgets. The declarations import no torch, so
``--list`` starts fast; :mod:`~pyro_gen.experiments.reproduce.driver` runs them (each row an
ordinary run folder) and :mod:`~pyro_gen.experiments.reproduce.table` writes ``table.md`` and
``table.json``.
"""

from __future__ import annotations

from .iwae import IWAE_TABLE1
from .made import MADE_REPRODUCTION
from .maf import MAF_TABLE2
from .pacgan import PACGAN_2D
from .pacgan_stacked import PACGAN_STACKED
from .pixelcnn import PIXELCNN_REPRODUCTION
from .spec import BUDGETS, Reproduction, Row

REPRODUCTIONS: dict[str, Reproduction] = {
    r.name: r
    for r in (
        IWAE_TABLE1,
        MADE_REPRODUCTION,
        MAF_TABLE2,
        PIXELCNN_REPRODUCTION,
        PACGAN_2D,
        PACGAN_STACKED,
    )
}


def reproductions() -> dict[str, Reproduction]:
    """Return every registered reproduction by name."""
    return dict(REPRODUCTIONS)


def get_reproduction(name: str | Reproduction) -> Reproduction:
    """Return the reproduction ``name`` (a :class:`Reproduction` is returned as it is);
    ``ValueError`` naming it and the known ones when unknown."""
    if isinstance(name, Reproduction):
        return name
    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}; choose one of {', '.join(REPRODUCTIONS)}")
    return REPRODUCTIONS[name]


def list_lines() -> list[str]:
    """Return the lines ``pyro-gen reproduce --list`` prints: each reproduction, its budgets and rows."""
    lines = []
    for rep in REPRODUCTIONS.values():
        lines.append(f"{rep.name}: {rep.title}")
        lines.append(f"  metric: {rep.metric} ({rep.units}), data: {rep.data}")
        for budget in BUDGETS:
            if budget in rep.budgets:
                lines.append(f"  budget {budget:<6} {rep.budgets[budget]}")
        for row in rep.rows:
            published = "-" if row.published is None else f"{row.published:.2f}"
            state = f"  ({row.unavailable})" if row.unavailable else ""
            lines.append(f"  row {row.name:<10} {row.label:<32} published {published} {row.tag}{state}")
    return lines


__all__ = [
    "BUDGETS",
    "REPRODUCTIONS",
    "Reproduction",
    "Row",
    "get_reproduction",
    "list_lines",
    "reproductions",
]
