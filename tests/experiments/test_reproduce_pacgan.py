"""pacgan-2d: its rows and settings per budget, a smoke run over two seeds on ring and grid, resume."""

import json

import pytest

from pyro_gen.experiments.reproduce import driver as drv
from pyro_gen.experiments.reproduce import get_reproduction
from pyro_gen.experiments.reproduce.pacgan import PACGAN_2D, PAPER_STEPS, pacgan_settings
from pyro_gen.experiments.reproduce.table import TABLE_MD, read_table, render_markdown

REP = PACGAN_2D


def test_rows_published_figures_and_seeds_per_budget():
    assert get_reproduction(REP) is REP
    names = [r.name for r in REP.rows]
    assert names == [f"{m}-{d}" for d in ("ring", "grid") for m in ("gan", "pacgan2", "pacgan4")]
    assert [r.published for r in REP.rows] == [6.3, 7.9, 7.8, 17.3, 23.8, 24.8]
    assert REP.row("gan-ring").published_extra == {"high_quality_share": 98.2, "kl_to_uniform": 0.45}
    assert REP.row("pacgan4-grid").published_extra == {"high_quality_share": 93.6, "kl_to_uniform": 0.04}
    assert REP.row("pacgan2-ring").published_extra == {"high_quality_share": None, "kl_to_uniform": None}
    assert all(r.tag == "[P]" and r.family == "gan" for r in REP.rows)
    assert [r.data for r in REP.rows] == ["ring"] * 3 + ["grid"] * 3
    row = REP.row("gan-grid")
    assert row.seeds_for("smoke") == (0, 1) and row.seeds_for("quick") == (0, 1, 2, 3, 4)
    assert row.seeds_for("paper") == tuple(range(10))
    assert [m.key for m in REP.extra_metrics] == [
        "high_quality_share",
        "kl_to_uniform",
        "within_mode_spread",
        "mmd2",
    ]
    assert REP.metric_key == "modes_captured" and not REP.likelihood and not REP.lower_is_better


def test_settings_follow_the_paper_where_the_family_allows():
    paper = REP.row("pacgan4-ring").settings("paper")
    assert paper["model"] == {
        "arch": "mlp",
        "hidden": "400,400,400,400",
        "disc_hidden": "200,200,200",
        "latent_dim": 2,
        "eval_samples": 2500,
        "pack": 4,
    }
    assert paper["trainer"] == {"loss": "ns", "beta1": 0.8, "beta2": 0.999, "d_steps": 1}
    train = paper["train"]
    assert (train["steps"], train["lr"], train["lr_schedule"]) == (PAPER_STEPS, 1e-4, "constant")
    assert PAPER_STEPS == 400 * 100_000 // 100
    assert train["batch_size"] == 400  # 100 packed critic inputs of 4 samples
    assert REP.row("gan-ring").settings("paper")["train"]["batch_size"] == 100
    quick = REP.row("pacgan4-grid").settings("quick")["train"]
    assert quick["lr_schedule"] == "linear" and quick["steps"] < PAPER_STEPS and quick["batch_size"] == 100
    assert REP.row("gan-grid").settings("smoke")["train"]["steps"] == 3
    with pytest.raises(ValueError, match="unknown budget"):
        REP.row("gan-ring").settings("huge")
    with pytest.raises(ValueError, match="unknown row"):
        pacgan_settings("moons", 1)
    # every budget's settings make a valid gan run plan
    from pyro_gen.runs import plan_run

    for budget in ("smoke", "quick", "paper"):
        sections = REP.row("pacgan2-grid").settings(budget)
        sections["run"] = {**sections["run"], "data": "grid"}
        plan = plan_run("gan", **sections)
        assert plan.model.pack == 2 and plan.trainer.loss == "ns"


def test_smoke_on_ring_and_grid_over_two_seeds_then_resume(tmp_path, monkeypatch):
    out = tmp_path / "pacgan"
    real = drv.run_row
    ran = []

    def killed_at_third_run(rep, row, *args, seed=None, **kwargs):
        if len(ran) == 2:
            raise KeyboardInterrupt  # killed as the second row's first seed starts
        ran.append((row.name, seed))
        return real(rep, row, *args, seed=seed, **kwargs)

    monkeypatch.setattr(drv, "run_row", killed_at_third_run)
    rows = ["gan-ring", "pacgan2-grid"]
    with pytest.raises(KeyboardInterrupt):
        drv.reproduce(REP, budget="smoke", out=out, rows=rows, progress=False)
    half = {e["name"]: e for e in read_table(out)["rows"]}
    assert half["gan-ring"]["status"] == "done" and half["gan-ring"]["seeds_done"] == 2
    assert half["pacgan2-grid"]["status"] == "running" and half["pacgan2-grid"]["seeds_done"] == 0
    kept = (out / "rows/gan-ring/seed-1/metrics.json").read_bytes()

    def recording(rep, row, *args, seed=None, **kwargs):
        ran.append((row.name, seed))
        return real(rep, row, *args, seed=seed, **kwargs)

    ran.clear()
    monkeypatch.setattr(drv, "run_row", recording)
    table = drv.reproduce(REP, budget="smoke", out=out, resume=True, rows=rows, progress=False)
    assert ran == [("pacgan2-grid", 0), ("pacgan2-grid", 1)]
    assert (out / "rows/gan-ring/seed-1/metrics.json").read_bytes() == kept
    entries = {e["name"]: e for e in table["rows"]}
    for name, data, modes in (("gan-ring", "ring", 8), ("pacgan2-grid", "grid", 25)):
        e = entries[name]
        assert e["status"] == "done" and e["seeds_done"] == 2 and e["steps"] == 3
        assert set(e["extra"]) == {"high_quality_share", "kl_to_uniform", "within_mode_spread", "mmd2"}
        for s in (0, 1):
            run = out / f"rows/{name}/seed-{s}"
            config = json.loads((run / "config.json").read_text())
            metrics = json.loads((run / "metrics.json").read_text())
            assert config["run"]["data"] == data and config["train"]["seed"] == s
            assert metrics["num_modes"] == modes and metrics["num_samples"] == 2500
        values = [r["ours"] for r in e["per_seed"]]
        assert e["ours"] == pytest.approx(sum(values) / 2, abs=1e-4)
    assert json.loads((out / "rows/pacgan2-grid/seed-0/config.json").read_text())["model"]["pack"] == 2
    assert entries["gan-grid"]["status"] == "pending"
    md = (out / TABLE_MD).read_text()
    head = next(ln for ln in md.splitlines() if ln.startswith("| row |"))
    assert (
        "| seeds | HQ % published | HQ % ours | reverse KL published | reverse KL ours | spread ours |"
        in head
    )
    assert "| steps |" in head and "k (eval)" not in head and "spread published" not in head
    assert "| GAN, ring (8 modes) | 6.3 | [P] |" in md and "| 2/2 | 98.2 |" in md
    assert table["data"] == "ring, grid" and render_markdown(read_table(out)) == md
