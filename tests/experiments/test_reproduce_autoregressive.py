"""The made and pixelcnn reproductions: rows and settings per budget, the smoke budget end to end, resume."""

import json

import numpy as np
import pytest

from pyro_gen.experiments.reproduce import driver as drv
from pyro_gen.experiments.reproduce import get_reproduction
from pyro_gen.experiments.reproduce.made import (
    MADE_REPRODUCTION,
    PAPER_EPOCHS,
    QUICK,
    QUICK_EPOCHS,
    made_width_settings,
)
from pyro_gen.experiments.reproduce.pixelcnn import PIXELCNN_REPRODUCTION
from pyro_gen.experiments.reproduce.table import TABLE_JSON, TABLE_MD


def test_made_rows_and_settings_per_budget():
    rep = get_reproduction(MADE_REPRODUCTION)
    assert rep is MADE_REPRODUCTION and rep.name == "made" and rep.sign == -1.0
    row = rep.row("made-1h-1mask")
    assert (row.published, row.tag, row.family) == (94.5, "[R]", "made")
    wide = rep.row("made-1h8000-1mask")
    assert (wide.published, wide.tag, wide.family) == (88.04, "[S]", "made")
    assert rep.row("made-2h-32masks").unavailable.startswith("not available")
    assert rep.row("made-2h-32masks").family is None
    settings = {b: row.settings(b) for b in ("smoke", "quick", "paper")}
    assert settings["paper"]["model"] == {
        "hidden": "500",
        "likelihood": "bernoulli",
        "order": "random",
        "degrees": "random",
        "mask_seed": 0,
        "direct": True,
        "activation": "relu",
    }
    assert settings["quick"]["model"] == settings["paper"]["model"]
    assert wide.settings("quick")["model"] == {**settings["paper"]["model"], "hidden": "8000"}
    assert settings["smoke"]["model"]["hidden"] == "16"
    for s in settings.values():
        assert s["run"]["binarize"] == "static" and s["train"]["batch_size"] == 100
        assert s["trainer"] == {} and s["model"]["degrees"] == "random" and s["model"]["order"] == "random"
    paper = settings["paper"]["train"]
    # the paper's protocol: Adagrad at 0.01, the last 10,000 training images choose the epoch
    assert (
        (paper["optimizer"], paper["lr"], paper["epochs"])
        == ("adagrad", 0.01, PAPER_EPOCHS)
        == ("adagrad", 0.01, 300.0)
    )
    assert (paper["validation"], paper["early_stopping"]) == (10_000, 30)
    quick = settings["quick"]["train"]
    assert (quick["epochs"], quick["optimizer"], quick["lr"]) == (QUICK_EPOCHS, "adam", 1e-3)
    assert (quick["lr_schedule"], quick["warmup_steps"]) == ("cosine", 500)
    assert (quick["validation"], quick["early_stopping"]) == (10_000, QUICK[500][1])
    assert wide.settings("quick")["train"]["epochs"] == QUICK[8000][0]
    assert settings["smoke"]["train"]["steps"] == 3 and "epochs" not in settings["smoke"]["train"]
    assert "validation" not in settings["smoke"]["train"]
    assert settings["paper"]["run"]["eval_points"] is None and settings["quick"]["run"]["eval_points"] is None
    assert settings["smoke"]["run"]["eval_points"] == 8
    assert set(rep.budgets) == {"smoke", "quick", "paper"}
    with pytest.raises(ValueError, match="unknown budget"):
        row.settings("full")
    with pytest.raises(ValueError, match="no quick budget for width 123"):
        made_width_settings(123)


def test_pixelcnn_rows_and_settings_per_budget():
    rep = PIXELCNN_REPRODUCTION
    row = rep.row("pixelcnn")
    assert (row.published, row.tag, row.family) == (81.30, "[S]", "pixelcnn")
    paper = row.settings("paper")
    assert paper["model"] == {
        "channels": 128,
        "layers": 15,
        "first_kernel": 7,
        "block": "bottleneck",
        "hidden": 64,
    }
    quick = row.settings("quick")
    assert quick["model"]["block"] == "bottleneck" and quick["model"]["layers"] < 15
    assert quick["model"]["channels"] < 128 and quick["train"]["epochs"] == 10.0
    assert row.settings("smoke")["train"]["steps"] == 2
    for b in ("smoke", "quick", "paper"):
        assert row.settings(b)["run"]["binarize"] == "static"
    with pytest.raises(ValueError, match="unknown budget"):
        row.settings("huge")


def test_settings_build_valid_plans():
    # every budget's settings pass the family's own validation (flags, choices, types)
    from pyro_gen.runs import plan_run

    for rep in (MADE_REPRODUCTION, PIXELCNN_REPRODUCTION):
        for row in rep.rows:
            if row.unavailable:
                continue
            for budget in ("smoke", "quick", "paper"):
                sections = row.settings(budget)
                sections["run"] = {**sections["run"], "data": "mnist:/nowhere"}
                plan = plan_run(row.family, **sections)
                assert plan.family.name == row.family


@pytest.mark.parametrize("rep", [MADE_REPRODUCTION, PIXELCNN_REPRODUCTION], ids=lambda r: r.name)
def test_smoke_budget_end_to_end_writes_the_table_and_a_loadable_row(tmp_path, mnist, rep):
    from pyro_gen.runs import load_run, load_run_data

    out = tmp_path / "table"
    table = drv.reproduce(rep, budget="smoke", out=out, data=mnist, progress=False)
    runnable = [r for r in rep.rows if r.unavailable is None]
    done = [e for e in table["rows"] if e["status"] == "done"]
    assert len(done) == len(runnable) >= 1
    entry = done[0]
    assert entry["steps"] == rep.row(entry["name"]).settings("smoke")["train"]["steps"]
    assert entry["eval_points"] == 8 and entry["difference"] == pytest.approx(
        entry["ours"] - entry["published"]
    )
    assert 0 < entry["ours"] < 784 * np.log(2) * 2
    saved = json.loads((out / TABLE_JSON).read_text())
    assert saved["rows"] == table["rows"] and saved["budget"] == "smoke"
    md = (out / TABLE_MD).read_text()
    assert "| done |" in md and "nats per image" in md and "static" in md
    # the row's run folder reloads and scores the same test images to the same number
    model, config = load_run(out / entry["run"])
    data = load_run_data(config)
    assert data.binarized and config["run"]["binarize"] == "static"
    ll = float(model.log_prob(data.test[:8]).mean())
    assert -ll == pytest.approx(entry["ours"], abs=1e-3)


def test_resume_of_a_half_finished_table(tmp_path, mnist, monkeypatch):
    out = tmp_path / "table"
    real = drv.run_row

    def killed(rep, row, *args, **kwargs):
        raise KeyboardInterrupt  # the process is killed while the row runs

    monkeypatch.setattr(drv, "run_row", killed)
    with pytest.raises(KeyboardInterrupt):
        drv.reproduce(MADE_REPRODUCTION, budget="smoke", out=out, data=mnist, progress=False)
    half = json.loads((out / TABLE_JSON).read_text())
    assert {e["name"]: e["status"] for e in half["rows"]} == {
        "made-1h-1mask": "running",
        "made-1h8000-1mask": "pending",
        "made-2h-32masks": "not available: needs training over 32 masks and a mask ensemble at test time",
    }
    with pytest.raises(ValueError, match="pass --resume"):
        drv.reproduce(MADE_REPRODUCTION, budget="smoke", out=out, data=mnist, progress=False)

    ran = []

    def recording(rep, row, *args, **kwargs):
        ran.append(row.name)
        return real(rep, row, *args, **kwargs)

    monkeypatch.setattr(drv, "run_row", recording)
    table = drv.reproduce(MADE_REPRODUCTION, budget="smoke", out=out, resume=True, progress=False)
    both = ["made-1h-1mask", "made-1h8000-1mask"]
    assert ran == both
    first = json.dumps(table["rows"][0], indent=1)
    metrics = (out / "rows/made-1h-1mask/metrics.json").read_bytes()
    # a finished table resumes to itself, running nothing
    table = drv.reproduce(MADE_REPRODUCTION, budget="smoke", out=out, resume=True, progress=False)
    assert ran == both and json.dumps(table["rows"][0], indent=1) == first
    assert (out / "rows/made-1h-1mask/metrics.json").read_bytes() == metrics
    # killed during the evaluation (no metrics.json): continues from the checkpoint, no retraining
    (out / "rows/made-1h-1mask/metrics.json").unlink()
    table = drv.reproduce(MADE_REPRODUCTION, budget="smoke", out=out, resume=True, progress=False)
    assert ran == [*both, "made-1h-1mask"]
    assert table["rows"][0]["status"] == "done" and table["rows"][0]["steps"] == 3
    assert table["rows"][0]["ours"] == pytest.approx(json.loads(first)["ours"], abs=1e-4)
