"""Shared test set-up: a fresh param store, a fixed seed and Pyro validation on for each test."""

import os

import pyro
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# One thread: the test networks are tiny, so a second thread only adds synchronisation
# (13x slower seen on a loaded 2-core machine).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(True):
        yield
    pyro.clear_param_store()
