"""Lazy package exports (PEP 562): names imported from their modules on first use.

The packages of pyro-gen export their public names this way, so that ``import pyro_gen`` and
the command line's ``--help`` load no torch, Pyro or ArviZ until a name is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def exports(package: str, where: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package`` exporting ``name`` from module ``where[name]``.

    ``where`` maps each exported name to a module, relative to ``package`` when it starts
    with a dot, absolute otherwise. ``__getattr__`` imports on first use and caches the value
    in the package's namespace; unknown names raise ``AttributeError``.
    """

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__
