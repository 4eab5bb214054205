"""`pyro-gen compare inference` on a conjugate program: NUTS and AutoNormal recover the exact posterior."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
import torch

from pyro_gen.data import load_data
from pyro_gen.experiments.inference import compare_inference, moment_errors

from .conftest import run_compare

PRIOR_SD = 3.0
PROGRAM = textwrap.dedent(
    f"""
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro_gen.models import data_plate

    def model(x):
        mu = pyro.sample("mu", dist.Normal(torch.zeros(x.shape[1]), {PRIOR_SD}).to_event(1))
        with data_plate(x):
            pyro.sample("obs", dist.Normal(mu, 1.0).to_event(1), obs=x)

    MODEL = model
    """
)


@pytest.fixture()
def program(tmp_path):
    path = tmp_path / "conjugate.py"
    path.write_text(PROGRAM)
    data = tmp_path / "x.csv"
    rows = np.random.default_rng(2).normal(size=(40, 2)) + [1.0, -2.0]
    np.savetxt(data, rows, delimiter=",")
    return f"{path}:MODEL", str(data)


def test_moment_errors_are_in_reference_standard_deviations():
    ref = {"a": torch.tensor([[0.0], [2.0], [4.0], [6.0]])}  # mean 3, sd sqrt(20/3)
    got = {"a": torch.tensor([[1.0], [3.0], [5.0], [7.0]])}  # shifted by 1, same sd
    summary, rows = moment_errors(got, ref)
    assert rows[0]["mean_error"] == pytest.approx(1 / math.sqrt(20 / 3))
    assert rows[0]["sd_ratio"] == pytest.approx(1.0)
    assert summary["max_abs_log_sd_ratio"] == pytest.approx(0.0, abs=1e-12)


def test_nuts_and_autonormal_match_the_exact_posterior(program):
    target, spec = program
    data = load_data(spec)
    x = data.train.double()
    precision = x.shape[0] + 1 / PRIOR_SD**2
    exact_mean, exact_sd = x.sum(0) / precision, 1 / math.sqrt(precision)
    result = compare_inference(
        target,
        data,
        guides=("normal",),
        steps=400,
        lr=0.05,
        num_samples=300,
        nuts_warmup=150,
        nuts_chains=1,
        k=100,
        progress=False,
    )
    by_method = {}
    for row in result["rows"]:
        by_method.setdefault(row["method"], []).append(row)
    (rows,) = by_method.values()
    for i, row in enumerate(rows):
        # NUTS (the reference) and the AutoNormal guide both sit on the conjugate posterior
        assert abs(row["reference_mean"] - float(exact_mean[i])) < 0.3 * exact_sd
        assert row["reference_sd"] == pytest.approx(exact_sd, rel=0.25)
        assert abs(row["mean"] - float(exact_mean[i])) < 0.3 * exact_sd
        assert row["sd"] == pytest.approx(exact_sd, rel=0.25)
    (method,) = result["methods"]
    assert method["name"] == "SVI AutoNormal" and method["khat"] < 0.7
    assert result["nuts"]["divergences"] == 0
    # held-out predictive density of N(mu, 1) rows in 2-D: about -2 * 1.42 nats
    assert -3.5 < result["nuts"]["test_log_predictive"] < -2.3


def test_the_comparison_writes_its_report_and_refuses_a_bad_guide(program, tmp_path):
    target, spec = program
    out = tmp_path / "inf"
    argv = ["inference", "--model", target, "--data", spec, "--guides", "normal", "--steps", "30"]
    argv += [
        "--num-samples",
        "40",
        "--nuts-warmup",
        "30",
        "--nuts-chains",
        "1",
        "--k",
        "30",
        "--out",
        str(out),
    ]
    assert run_compare([*argv, "--no-progress"]) == 0
    saved = json.loads((out / "comparison.json").read_text())
    assert any("ESS" in w for w in saved["nuts"]["warnings"])  # 40 draws are too few, and it says so
    assert saved["latents"] == ["mu"] and saved["methods"][0]["guide"] == "normal"
    assert "| NUTS |" in (out / "report.md").read_text() and (out / "inference.csv").is_file()
    assert "SVI AutoNormal" in (out / "index.html").read_text()
    with pytest.raises(ValueError, match="--guides: unknown guide 'flowy'"):
        run_compare([*argv[:6], "flowy", *argv[7:], "--no-progress"])
