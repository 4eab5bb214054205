"""Comparisons run by ``pyro-gen compare TARGET``: one registry entry per target.

A comparison is ``(summary, add_arguments(parser), run(args) -> int)``; ``run`` writes a
report folder and prints where it is. Each target lives in its own module listed in
``_MODULES`` (imported lazily so the CLI starts fast); the module calls
:func:`register_comparison` at import.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    """One ``pyro-gen compare`` target."""

    name: str
    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


_COMPARISONS: dict[str, Comparison] = {}
# One line per module that registers comparisons (e.g. "pyro_gen.compare.gmm").
_MODULES: list[str] = [
    "pyro_gen.compare.families",
    "pyro_gen.compare.gmm",
    "pyro_gen.compare.vae",
]


def register_comparison(comparison: Comparison) -> Comparison:
    """Register a ``pyro-gen compare`` target; returns it."""
    _COMPARISONS[comparison.name] = comparison
    return comparison


def comparisons() -> dict[str, Comparison]:
    """Return every registered comparison by name."""
    for mod in _MODULES:
        importlib.import_module(mod)
    return dict(sorted(_COMPARISONS.items()))
