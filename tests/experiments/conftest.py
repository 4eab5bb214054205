"""Shared helpers: run a ``pyro-gen compare`` target from its registered flags, threads restored."""

from __future__ import annotations

import argparse

import pytest
import torch

from pyro_gen.experiments import comparisons


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def run_compare(argv: list[str]) -> int:
    """Parse ``argv`` (target first) with the target's own flags and run it; return its exit status."""
    target, *rest = argv
    comparison = comparisons()[target]
    parser = argparse.ArgumentParser(prog=f"pyro-gen compare {target}")
    comparison.add_arguments(parser)
    args = parser.parse_args(rest)
    args.target = target
    return comparison.run(args)
