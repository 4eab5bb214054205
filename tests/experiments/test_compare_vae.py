"""`pyro-gen compare vae` / `compare discrete`: one report folder, same start, true costs."""

import json

import pytest

from .conftest import run_compare


def test_compare_vae_writes_one_report_with_variance_at_checkpoints(tmp_path):
    out = tmp_path / "cmp"
    rc = run_compare(
        "vae --steps 12 --checkpoints 2 --variance-draws 4 --k 20 --latent-dim 2 --hidden 16 "
        "--eval-every 6 --eval-particles 10 --device cpu "
        f"--estimators reparam,score --out {out} --no-progress".split()
    )
    assert rc == 0
    for name in ["report.md", "estimators.csv", "gradient_variance.csv", "comparison.json", "index.html"]:
        assert (out / name).is_file(), name
    for name in ["elbo_vs_steps.png", "elbo_vs_seconds.png", "gradient_variance.png", "gradient_snr.png"]:
        assert (out / name).stat().st_size > 1000, name
    res = json.loads((out / "comparison.json").read_text())["results"]
    assert [r["name"] for r in res] == ["reparam", "score"]
    for r in res:
        assert [v["step"] for v in r["variance"]] == [0, 12]
        f = r["final"]
        # importance sampling (k=20) bounds log p(x) more tightly than the ELBO
        assert f["test_log_likelihood"] > f["test_elbo"] - 0.5
    # same initialization and the same fixed batch at step 0: score-function encoder gradients
    # are far noisier than reparameterized ones, and the decoder's are identical (same z draws)
    v0 = {r["name"]: r["variance"][0] for r in res}
    assert v0["score"]["encoder"]["total_variance"] > 10 * v0["reparam"]["encoder"]["total_variance"]
    assert v0["score"]["decoder"]["total_variance"] == pytest.approx(
        v0["reparam"]["decoder"]["total_variance"]
    )
    report = (out / "report.md").read_text()
    assert "| score |" in report and "## Costs" in report and "median" in report


def test_compare_vae_ms_per_step_is_training_seconds_over_steps_from_history(tmp_path):
    out = tmp_path / "cost"
    rc = run_compare(
        "vae --steps 20 --checkpoints 3 --variance-draws 20 --k 10 --latent-dim 2 --hidden 16 --eval-every 5 "
        f"--eval-particles 5 --threads 1 --estimators reparam,stl --out {out} --no-progress".split()
    )
    assert rc == 0
    res = json.loads((out / "comparison.json").read_text())["results"]
    for r in res:
        c, last = r["costs"], r["history"][-1]
        assert last["step"] == c["steps"] == 20
        assert c["ms_per_step"] == pytest.approx(1000 * last["seconds"] / last["step"], rel=1e-9)
        assert c["cpu_ms_per_step"] == pytest.approx(1000 * last["cpu_seconds"] / last["step"], rel=1e-9)
        assert c["train_seconds"] > 0 and c["threads"] == 1 and c["device"] == "cpu"
        # measuring the variance (20 draws at 2 checkpoints during training) is evaluation time
        measured = sum(v["seconds"] for v in r["variance"] if v["step"] > 0)
        assert c["eval_seconds"] >= measured
        secs = [h["seconds"] for h in r["history"]]
        assert secs == sorted(secs)
    table = (out / "report.md").read_text()
    for r in res:
        assert f"{r['costs']['ms_per_step']:.2f}" in table
    assert "evaluation is excluded" in table


def test_compare_rejects_unknown_estimators(tmp_path):
    with pytest.raises(ValueError, match="unknown estimator 'reinforce'"):
        run_compare(f"vae --estimators reparam,reinforce --out {tmp_path} --no-progress".split())


def test_compare_discrete_reports_exact_log_likelihood_and_costs(tmp_path):
    out = tmp_path / "disc"
    rc = run_compare(
        f"discrete --steps 10 --num-latents 3 --hidden 16 --methods enum,score-loo,relaxed "
        f"--out {out} --no-progress".split()
    )
    assert rc == 0
    res = json.loads((out / "comparison.json").read_text())["results"]
    assert [r["name"] for r in res] == ["enum", "score-loo", "relaxed"]
    for r in res:
        f, c = r["final"], r["costs"]
        assert f["test_log_likelihood"] >= f["test_exact_elbo"] - 1e-4
        assert c["ms_per_step"] == pytest.approx(1000 * r["history"][-1]["seconds"] / 10, rel=1e-9)
    assert (out / "objective_vs_seconds.png").stat().st_size > 1000
    assert "## Costs" in (out / "report.md").read_text()
    assert "objective_vs_seconds" in (out / "index.html").read_text()  # the page shows the report's figures
