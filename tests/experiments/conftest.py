"""Shared helpers: run a ``pyro-gen compare`` target from its registered flags, threads restored;
a tiny MNIST-shaped IDX folder for the reproductions."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from pyro_gen.data import write_idx
from pyro_gen.experiments import comparisons


def write_tiny_mnist(folder, num_train: int = 60, num_test: int = 16) -> None:
    """Write random 28x28 images and digit labels as MNIST's four IDX files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", num_train), ("t10k", num_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))


@pytest.fixture
def mnist(tmp_path, monkeypatch):
    """``mnist:PATH`` of a tiny MNIST-shaped IDX folder (60 training, 16 test images);
    $PYRO_GEN_MNIST unset."""
    monkeypatch.delenv("PYRO_GEN_MNIST", raising=False)
    write_tiny_mnist(tmp_path / "mnist")
    return f"mnist:{tmp_path / 'mnist'}"


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
