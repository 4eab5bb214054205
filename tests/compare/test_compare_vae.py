"""`pyro-gen compare vae` / `compare discrete`: one report folder, same start for every estimator."""

import json

import pytest
import torch

from pyro_gen.cli import main


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_compare_vae_writes_one_report_with_variance_at_checkpoints(tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(
        "compare vae --steps 12 --checkpoints 2 --variance-draws 4 --k 20 --latent-dim 2 --hidden 16 "
        "--eval-every 6 --eval-particles 10 --device cpu "
        f"--estimators reparam,score --out {out} --no-progress".split()
    )
    assert rc == 0
    for name in ["report.md", "estimators.csv", "gradient_variance.csv", "comparison.json"]:
        assert (out / name).is_file(), name
    for name in ["elbo_vs_steps.png", "elbo_vs_seconds.png", "gradient_variance.png", "gradient_snr.png"]:
        assert (out / name).stat().st_size > 1000, name
    res = json.loads((out / "comparison.json").read_text())["results"]
    assert [r["name"] for r in res] == ["reparam", "score"]
    for r in res:
        assert [v["step"] for v in r["variance"]] == [0, 12]
        f = r["final"]
        assert f["ms_per_step"] > 0
        # importance sampling (k=20) bounds log p(x) more tightly than the ELBO
        assert f["test_log_likelihood"] > f["test_elbo"] - 0.5
    # same initialization and the same fixed batch at step 0: score-function encoder gradients
    # are far noisier than reparameterized ones, and the decoder's are identical (same z draws)
    v0 = {r["name"]: r["variance"][0] for r in res}
    assert v0["score"]["encoder"]["total_variance"] > 10 * v0["reparam"]["encoder"]["total_variance"]
    assert v0["score"]["decoder"]["total_variance"] == pytest.approx(
        v0["reparam"]["decoder"]["total_variance"]
    )
    assert "| score |" in (out / "report.md").read_text()


def test_compare_rejects_unknown_estimators(tmp_path, capsys):
    rc = main(f"compare vae --estimators reparam,reinforce --out {tmp_path} --no-progress".split())
    assert rc == 2
    assert "unknown estimator 'reinforce'" in capsys.readouterr().err


def test_compare_discrete_reports_exact_log_likelihood(tmp_path):
    out = tmp_path / "disc"
    rc = main(
        f"compare discrete --steps 10 --num-latents 3 --hidden 16 --methods enum,score-loo,relaxed "
        f"--out {out} --no-progress".split()
    )
    assert rc == 0
    res = json.loads((out / "comparison.json").read_text())["results"]
    assert [r["name"] for r in res] == ["enum", "score-loo", "relaxed"]
    for r in res:
        f = r["final"]
        assert f["test_log_likelihood"] >= f["test_exact_elbo"] - 1e-4
