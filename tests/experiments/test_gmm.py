"""`compare gmm`: every method's costs come from its FitResult, EM's and NUTS's included."""

import json

import pytest

from .conftest import run_compare


def test_compare_gmm_reports_costs_per_method(tmp_path):
    out = tmp_path / "gmm"
    rc = run_compare(
        f"gmm --methods em,svi-map --svi-steps 60 --k-range  --out {out} --no-progress".split(" ")
    )
    assert rc == 0
    report = json.loads((out / "comparison.json").read_text())
    em, svi = report["methods"]["em"], report["methods"]["svi-map"]
    assert svi["costs"]["steps"] == 60
    assert em["costs"]["steps"] >= em["n_iter"]
    for m in (em, svi):
        c = m["costs"]
        assert c["train_seconds"] > 0
        assert c["ms_per_step"] == pytest.approx(1000 * c["train_seconds"] / c["steps"])
    text = (out / "report.md").read_text()
    assert "## Costs" in text and "| em |" in text and "| svi-map |" in text
    assert (out / "objective_vs_seconds.png").stat().st_size > 1000
