"""maf-table2: the rows and their settings per budget, the smoke budget end to end, resume."""

import json

import numpy as np
import pytest

from pyro_gen.experiments.reproduce import driver as drv
from pyro_gen.experiments.reproduce.maf import MAF_TABLE2, PAPER_EPOCHS, QUICK_EPOCHS
from pyro_gen.experiments.reproduce.table import TABLE_JSON, TABLE_MD

REP = MAF_TABLE2


def test_rows_published_figures_and_the_metric():
    assert [r.name for r in REP.rows] == ["maf5", "maf10", "realnvp5", "maf-mog5", "made-mog"]
    assert [r.published for r in REP.rows[:3]] == [-1300.5, -1313.1, -1323.2]
    assert all(r.family == "flow" and r.unavailable is None for r in REP.rows[:3])
    assert all(r.unavailable and r.family is None for r in REP.rows[3:])
    # the paper's quantity: a log-likelihood in logit space, higher is better, no sign flip
    assert REP.metric_key == "test_log_likelihood_logit" and REP.sign == 1.0 and not REP.lower_is_better
    assert set(REP.budgets) == {"smoke", "quick", "paper"}


def test_settings_per_budget_follow_the_papers_architecture():
    paper = REP.row("maf5").settings("paper")
    model = paper["model"]
    assert (model["transform"], model["depth"], model["hidden"]) == ("maf", 5, "1024,1024")
    assert (model["made_order"], model["permutation"]) == ("sequential", "reverse")
    assert model["batch_norm"] and model["bn_last"] and model["bn_stats"] == "full"
    assert model["alpha"] == 1e-6 and model["pixels"] == "grey"
    train = paper["train"]
    assert (train["batch_size"], train["lr"], train["optimizer"]) == (100, 1e-4, "adam")
    assert train["epochs"] == PAPER_EPOCHS and train["lr_schedule"] == "constant"
    # the paper's protocol: the last 10,000 training images stop the training (patience 30)
    assert (train["validation"], train["early_stopping"]) == (10_000, 30)
    assert paper["run"]["eval_points"] is None and paper["trainer"] == {}
    assert REP.row("maf10").settings("paper")["model"]["depth"] == 10
    nvp = REP.row("realnvp5").settings("paper")["model"]
    assert (nvp["transform"], nvp["depth"], nvp["permutation"]) == ("masked_coupling", 5, "none")
    assert "made_order" not in nvp and nvp["bn_last"]
    quick = {r: REP.row(r).settings("quick") for r in ("maf5", "maf10", "realnvp5")}
    assert {r: s["train"]["epochs"] for r, s in quick.items()} == QUICK_EPOCHS
    assert all(s["run"]["eval_points"] is None for s in quick.values())  # all 10,000 test images
    assert all(s["model"]["hidden"] == "1024,1024" for s in quick.values())
    smoke = REP.row("maf5").settings("smoke")
    assert smoke["train"]["steps"] == 3 and "epochs" not in smoke["train"]
    assert smoke["model"]["depth"] == 2 and smoke["model"]["hidden"] == "784"
    assert smoke["run"]["eval_points"] == 8
    with pytest.raises(ValueError, match="unknown budget"):
        REP.row("maf5").settings("huge")


def test_every_budgets_settings_make_a_valid_plan():
    from pyro_gen.runs import plan_run

    for row in REP.rows[:3]:
        for budget in REP.budgets:
            sections = row.settings(budget)
            sections["run"] = {**sections["run"], "data": "mnist:/nowhere"}
            plan = plan_run(row.family, **sections)
            assert plan.model.alpha == 1e-6 and plan.model.batch_norm


def test_smoke_budget_end_to_end_writes_the_table(tmp_path, mnist):
    out = tmp_path / "table"
    table = drv.reproduce(REP, budget="smoke", out=out, data=mnist, progress=False)
    done = {e["name"]: e for e in table["rows"] if e["status"] == "done"}
    assert set(done) == {"maf5", "maf10", "realnvp5"}
    for e in done.values():
        metrics = json.loads((out / e["run"] / "metrics.json").read_text())
        assert e["ours"] == pytest.approx(metrics["test_log_likelihood_logit"], abs=1e-3)
        assert np.isfinite(e["ours"]) and e["steps"] == 3 and e["eval_points"] == 8
        assert metrics["bn_stats"] == "full" and metrics["logit_alpha"] == 1e-6
        assert metrics["bn_layers"] == 2  # smoke: two blocks, a batch-norm layer after each
        assert e["difference"] == pytest.approx(e["ours"] - e["published"], abs=1e-3)
    md = (out / TABLE_MD).read_text()
    assert md.count("| done |") == 3 and "higher is better" in md
    assert "needs a mixture-of-Gaussians MADE" in md and "MAF(10)" in md
    assert json.loads((out / TABLE_JSON).read_text())["name"] == "maf-table2"


def test_resume_of_a_half_finished_table_runs_only_the_missing_rows(tmp_path, mnist, monkeypatch):
    out = tmp_path / "table"
    real = drv.run_row
    calls = []

    def killed_after_first(rep, row, *args, **kwargs):
        if calls:
            raise KeyboardInterrupt  # the process is killed while the second row starts
        calls.append(row.name)
        return real(rep, row, *args, **kwargs)

    monkeypatch.setattr(drv, "run_row", killed_after_first)
    rows = ["maf5", "realnvp5"]
    with pytest.raises(KeyboardInterrupt):
        drv.reproduce(REP, budget="smoke", out=out, data=mnist, rows=rows, progress=False)
    half = json.loads((out / TABLE_JSON).read_text())
    status = {e["name"]: e["status"] for e in half["rows"]}
    assert status == {
        "maf5": "done",
        "maf10": "pending",
        "realnvp5": "running",
        "maf-mog5": "not available: needs a mixture-of-Gaussians MADE",
        "made-mog": "not available: needs a mixture-of-Gaussians MADE",
    }
    first = json.dumps(half["rows"][0], indent=1)
    metrics_bytes = (out / "rows/maf5/metrics.json").read_bytes()
    ran = []

    def recording(rep, row, *args, **kwargs):
        ran.append(row.name)
        return real(rep, row, *args, **kwargs)

    monkeypatch.setattr(drv, "run_row", recording)
    table = drv.reproduce(REP, budget="smoke", out=out, resume=True, rows=rows, progress=False)
    assert ran == ["realnvp5"]
    assert json.dumps(table["rows"][0], indent=1) == first
    assert (out / "rows/maf5/metrics.json").read_bytes() == metrics_bytes
    assert {e["name"]: e["status"] for e in table["rows"]}["realnvp5"] == "done"
    assert {e["name"]: e["status"] for e in table["rows"]}["maf10"] == "pending"
