"""pacgan-stacked: the declaration, the smoke budget end to end on a tiny stacked MNIST, resume."""

import json
import math

import pytest

from pyro_gen.experiments.reproduce import driver as drv
from pyro_gen.experiments.reproduce import get_reproduction
from pyro_gen.experiments.reproduce.pacgan_stacked import PACGAN_STACKED
from pyro_gen.experiments.reproduce.table import TABLE_JSON, TABLE_MD

from .conftest import write_tiny_mnist

REP = PACGAN_STACKED


@pytest.fixture
def stacked(tmp_path, monkeypatch):
    """``stacked-mnist:PATH`` of a tiny MNIST-shaped IDX folder (60 training, 16 test images),
    stacked into 48 training and 16 test images; $PYRO_GEN_MNIST unset."""
    import pyro_gen.data.stacked as stacked_module

    monkeypatch.delenv("PYRO_GEN_MNIST", raising=False)
    monkeypatch.setattr(stacked_module, "TRAIN_SIZE", 48)
    monkeypatch.setattr(stacked_module, "TEST_SIZE", 16)
    write_tiny_mnist(tmp_path / "mnist")
    return f"stacked-mnist:{tmp_path / 'mnist'}"


def test_declaration_rows_budgets_and_paper_settings():
    assert get_reproduction(REP) is REP
    assert [r.name for r in REP.rows] == ["dcgan", "pacdcgan2", "veegan"]
    assert REP.row("dcgan").published == 99.0 and REP.row("dcgan").published_extra == {"kl_to_uniform": 3.40}
    assert REP.row("pacdcgan2").published == 1000.0 and REP.row("pacdcgan2").tag == "[P]"
    assert REP.row("veegan").unavailable and REP.row("veegan").family is None
    assert REP.metric_key == "modes_captured" and not REP.lower_is_better and not REP.likelihood
    assert [m.key for m in REP.extra_metrics] == ["kl_to_uniform", "classifier_test_accuracy"]
    paper = REP.row("pacdcgan2").settings("paper")
    assert paper["model"] == {
        "arch": "dcgan",
        "latent_dim": 100,
        "width": 64,
        "pack": 2,
        "eval_samples": 26000,
        "classifier_epochs": 5,
    }
    # 64 packed inputs per step (128 images for pairs), 50 epochs of 2,000 steps, Adam(2e-4, 0.5)
    assert paper["train"] == {
        "steps": 100_000,
        "batch_size": 128,
        "lr": 2e-4,
        "lr_schedule": "constant",
        "seed": 0,
    }
    assert paper["trainer"] == {"loss": "ns", "beta1": 0.5, "d_steps": 1}
    assert REP.row("dcgan").settings("paper")["train"]["batch_size"] == 64
    assert (
        REP.row("dcgan").seeds_for("paper") == tuple(range(10)) and REP.row("dcgan").seeds_for("quick") == ()
    )
    with pytest.raises(ValueError, match="unknown budget"):
        REP.row("dcgan").settings("huge")


def test_smoke_budget_end_to_end(tmp_path, stacked):
    out = tmp_path / "table"
    table = drv.reproduce(REP, budget="smoke", out=out, data=stacked, progress=False)
    rows = {e["name"]: e for e in table["rows"]}
    assert rows["veegan"]["status"].startswith("not available")
    for name in ("dcgan", "pacdcgan2"):
        e = rows[name]
        assert e["status"] == "done" and e["seeds_done"] == 2, e
        assert 1 <= e["ours"] <= 200  # 200 samples can hit at most 200 of the 1000 modes
        kl = e["extra"]["kl_to_uniform"]
        assert math.log(1000 / 200) - 1e-9 <= kl <= math.log(1000) + 1e-9
        assert 0 <= e["extra"]["classifier_test_accuracy"] <= 100
        for s in (0, 1):
            metrics = json.loads((out / f"rows/{name}/seed-{s}/metrics.json").read_text())
            assert metrics["steps"] == 3 and metrics["num_modes"] == 1000 and metrics["eval_samples"] == 200
            config = json.loads((out / f"rows/{name}/seed-{s}/config.json").read_text())
            assert config["model"]["arch"] == "dcgan" and config["train"]["seed"] == s
    assert rows["pacdcgan2"]["per_seed"][0]["estimator"] == "adversarial:ns:pack2"
    md = (out / TABLE_MD).read_text()
    assert "| DCGAN | 99.0 |" in md and "KL" in md and "not available" in md
    assert table["data"] == stacked


def test_resume_of_a_half_finished_table(tmp_path, stacked, monkeypatch):
    out = tmp_path / "table"
    real = drv.run_row
    calls = []

    def killed_at_the_second_run(rep, row, *args, **kwargs):
        if calls:
            raise KeyboardInterrupt  # the process is killed as the second seed starts
        calls.append(row.name)
        return real(rep, row, *args, **kwargs)

    monkeypatch.setattr(drv, "run_row", killed_at_the_second_run)
    with pytest.raises(KeyboardInterrupt):
        drv.reproduce(REP, budget="smoke", out=out, data=stacked, progress=False)
    half = json.loads((out / TABLE_JSON).read_text())
    status = {e["name"]: e["status"] for e in half["rows"]}
    assert status["dcgan"] == "running" and status["pacdcgan2"] == "pending"
    first = (out / "rows/dcgan/seed-0/metrics.json").read_bytes()

    ran = []

    def recording(rep, row, *args, seed=None, **kwargs):
        ran.append((row.name, seed))
        return real(rep, row, *args, seed=seed, **kwargs)

    monkeypatch.setattr(drv, "run_row", recording)
    table = drv.reproduce(REP, budget="smoke", out=out, resume=True, progress=False)  # --data from the table
    assert ran == [("dcgan", 1), ("pacdcgan2", 0), ("pacdcgan2", 1)]
    assert (out / "rows/dcgan/seed-0/metrics.json").read_bytes() == first
    assert {e["name"]: e["status"] for e in table["rows"]}["dcgan"] == "done"
    assert (out / TABLE_MD).read_text().count("| done |") == 2
