"""`pyro-gen diagnose RUN_DIR` on a real (tiny) VAE run folder."""

import json

import numpy as np
import pytest

from pyro_gen.cli import main
from pyro_gen.diagnostics import load_inference_data
from pyro_gen.runs import run_fit


@pytest.fixture
def vae_run(tmp_path):
    out = tmp_path / "run"
    run_fit(
        "vae",
        "digits",
        out=out,
        options={"latent_dim": 3, "hidden": "16"},
        steps=20,
        k=20,
        progress=False,
    )
    return out


def test_diagnose_writes_inference_data_figures_and_table(vae_run, capsys):
    argv = ["diagnose", str(vae_run), "--num-points", "40", "--num-samples", "30", "--k", "100"]
    rc = main(argv + ["--gap-points", "4", "--gap-steps", "20", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    for label in ("PSIS k-hat", "IS - ELBO gap", "active units", "KL to prior", "amortization gap"):
        assert label in out
    for name in (
        "diagnostics.nc",
        "diagnostics.json",
        "diag_khat.png",
        "diag_kl_per_dim.png",
        "diag_rank.png",
        "diag_ess.png",
    ):
        assert (vae_run / name).stat().st_size > 0, name
    idata = load_inference_data(vae_run / "diagnostics.nc")
    assert {"posterior", "posterior_predictive", "log_likelihood", "observed_data", "sample_stats"} <= set(
        idata.groups()
    )
    assert idata.posterior["z"].dims == ("chain", "draw", "data", "z_dim_0")
    assert idata.posterior["z"].shape == (2, 30, 40, 3)
    summary = json.loads((vae_run / "diagnostics.json").read_text())
    assert len(summary["psis"]["khat"]) == 40
    assert summary["active_units"]["num_units"] == 3
    # the IS estimate is at least the ELBO (up to Monte Carlo noise), in nats per point
    assert summary["importance"]["log_likelihood"] >= summary["importance"]["elbo"] - 0.05
    assert np.isfinite(summary["amortization"]["amortization_gap"])
    assert summary["amortization"]["amortization_gap"] >= 0.0


def test_diagnose_errors_are_one_line(tmp_path, vae_run, capsys):
    assert main(["diagnose", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["diagnose", str(vae_run), "--k", "5"]) == 2
    assert "--k must be at least 20" in capsys.readouterr().err
