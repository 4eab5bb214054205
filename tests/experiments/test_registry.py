"""The ``pyro-gen compare`` registry: same targets, flags built without torch."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import pyro_gen
from pyro_gen.experiments import Comparison, comparisons, register_comparison

HEAVY = ("torch", "pyro", "arviz", "sklearn", "matplotlib")


def test_targets_and_their_flags():
    comps = comparisons()
    assert list(comps) == ["collapse", "discrete", "estimators", "families", "gmm", "inference", "vae"]
    defaults = {}
    for name, comp in comps.items():
        p = argparse.ArgumentParser()
        comp.add_arguments(p)
        defaults[name] = vars(p.parse_args([]))
        assert comp.summary and callable(comp.run)
    assert defaults["vae"]["estimators"].split(",")[:2] == ["reparam", "analytic-kl"]
    assert defaults["vae"]["threads"] == 1
    assert defaults["gmm"]["methods"] == "em,svi-map,svi-normal,nuts"
    assert defaults["families"]["budget"] == "full"
    assert defaults["discrete"]["methods"] == "enum,score-baseline,score-loo,relaxed"


def test_register_comparison_adds_a_target_and_rejects_other_objects():
    extra = Comparison("zzz-test", "a test target", lambda p: None, lambda args: 7)
    register_comparison(extra)
    try:
        assert comparisons()["zzz-test"].run(None) == 7
    finally:
        from pyro_gen.experiments import registry

        del registry._COMPARISONS["zzz-test"]
    with pytest.raises(ValueError, match="Comparison"):
        register_comparison({"name": "x"})


def test_building_the_compare_flags_imports_no_heavy_library():
    # Load the experiments package without running pyro_gen/__init__ (which may import torch),
    # so only what the registry itself imports is measured.
    root = Path(pyro_gen.__file__).parent
    code = f"""
import argparse, sys, types
pkg = types.ModuleType("pyro_gen"); pkg.__path__ = [{str(root)!r}]; sys.modules["pyro_gen"] = pkg
import pyro_gen.experiments as e
for c in e.comparisons().values():
    c.add_arguments(argparse.ArgumentParser())
print(",".join(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
