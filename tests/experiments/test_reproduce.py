"""pyro-gen reproduce: the registry, the table writer, resume of a half-finished table, the data error."""

import dataclasses
import json

import pytest

from pyro_gen.cli import main
from pyro_gen.experiments.reproduce import driver as drv
from pyro_gen.experiments.reproduce import get_reproduction, list_lines, reproductions
from pyro_gen.experiments.reproduce.table import (
    TABLE_JSON,
    TABLE_MD,
    done_entry,
    pending_entry,
    read_table,
    render_markdown,
    write_table,
)

REP = get_reproduction("iwae-table1")


def test_registry_rows_budgets_and_settings():
    assert "iwae-table1" in reproductions()
    names = [r.name for r in REP.rows]
    assert names[:9] == [f"{o}-k{k}" for o in ("vae", "iwae", "dreg") for k in (1, 5, 50)]
    assert [r.name for r in REP.rows[9:]] == [f"{o}-k{k}" for o in ("vae2", "iwae2") for k in (1, 5, 50)]
    assert all(r.unavailable is None and r.family == "vae" for r in REP.rows)
    assert REP.row("iwae-k50").published == 84.78 and REP.row("iwae-k50").tag == "[S]"
    assert REP.row("dreg-k5").tag == "[R]"
    paper = REP.row("iwae-k5").settings("paper")
    assert paper["trainer"] == {"estimator": "iwae:5"}
    assert paper["model"] == {
        "latent_dim": 50,
        "hidden": "200,200",
        "activation": "tanh",
        "likelihood": "bernoulli",
    }
    train = paper["train"]
    assert (train["epochs"], train["batch_size"], train["lr"]) == (3280.0, 20, 1e-3)
    assert (train["adam_betas"], train["adam_eps"], train["lr_schedule"]) == ("0.99,0.999", 1e-4, "stages")
    assert paper["run"] == {"binarize": "dynamic", "k": 5000, "eval_points": None}
    assert REP.row("vae-k5").settings("quick")["trainer"] == {
        "estimator": "auto",
        "num_particles": 5,
        "kl_warmup_steps": 18_000,
    }
    assert REP.row("iwae-k5").settings("quick")["trainer"] == {"estimator": "iwae:5"}
    quick = REP.row("dreg-k50").settings("quick")["train"]
    assert (quick["batch_size"], quick["lr_schedule"], quick["warmup_steps"]) == (100, "cosine", 600)
    # the quick budget's peak rate: 3e-3 for the one-layer VAE rows only (two layers degrade at it)
    rates = {
        name: REP.row(name).settings("quick")["train"]["lr"]
        for name in ("vae-k1", "vae-k50", "iwae-k5", "dreg-k5", "vae2-k1", "iwae2-k1")
    }
    assert rates == {
        "vae-k1": 3e-3,
        "vae-k50": 3e-3,
        "iwae-k5": 1e-3,
        "dreg-k5": 1e-3,
        "vae2-k1": 1e-3,
        "iwae2-k1": 1e-3,
    }
    assert REP.row("vae-k1").settings("paper")["train"]["lr"] == 1e-3
    two = REP.row("iwae2-k5").settings("paper")
    assert two["model"]["lower_latents"] == "100" and two["model"]["between_hidden"] == "100,100"
    assert two["trainer"] == {"estimator": "iwae:5"} and two["train"]["epochs"] == 3280.0
    text = "\n".join(list_lines())
    assert "budget smoke" in text and "budget quick" in text and "budget paper" in text
    with pytest.raises(ValueError, match="no row 'nope'"):
        REP.row("nope")


def _table(rows):
    return {
        "format": 1,
        "name": REP.name,
        "title": REP.title,
        "paper": REP.paper,
        "metric": REP.metric,
        "units": REP.units,
        "lower_is_better": True,
        "budget": "smoke",
        "budget_description": REP.budgets["smoke"],
        "data": "mnist:/x",
        "notes": list(REP.notes),
        "rows": rows,
    }


def test_table_writer_published_ours_difference_units_source_and_a_failed_row(tmp_path):
    row = REP.row("iwae-k5")
    metrics = {
        "test_log_likelihood": -86.0412,
        "epochs": 3.0,
        "steps": 9,
        "k": 8,
        "eval_points": 8,
        "seconds": 61.0,
        "eval_seconds": 30.0,
        "threads": 1,
        "device": "cpu",
        "estimator": "iwae:5",
    }
    hw = {"cpu": "Test CPU 9000", "cpus": 2, "gpu": None, "threads": 1, "load": [1.25, 1.0, 0.5]}
    done = done_entry(REP, row, metrics, "rows/iwae-k5", {"wall_seconds": 95.0, "hardware": hw})
    assert done["ours"] == 86.0412 and done["difference"] == pytest.approx(86.0412 - 85.54)
    failed = {**pending_entry(REP.row("vae-k1")), "status": "failed: ValueError: bad thing"}
    gone = pending_entry(dataclasses.replace(REP.row("iwae2-k5"), unavailable="not available: needs X"))
    write_table(tmp_path, _table([done, failed, gone]))
    md = (tmp_path / TABLE_MD).read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("| IWAE, k=5 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:5] == ["IWAE, k=5", "85.54", "[S]", "86.04", "+0.50"]
    assert cells[5:8] == ["8", "8", "3.0"] and cells[-2] == "CPU, 1 thread, load 1.25" and cells[-1] == "done"
    assert "| VAE, k=1 | 86.76 | [S] | - | - |" in md and "failed: ValueError: bad thing |" in md
    assert "not available: needs X" in md
    assert "nats per image" in md and "difference = ours - published" in md and "Test CPU 9000" in md
    assert "[S] Burda et al." in md
    assert read_table(tmp_path)["rows"][0] == done
    assert render_markdown(read_table(tmp_path)) == md


def test_resume_runs_only_missing_rows_and_keeps_finished_ones_byte_for_byte(tmp_path, mnist, monkeypatch):
    out = tmp_path / "table"
    real = drv.run_row
    calls = []

    def killed_after_first(rep, row, *args, **kwargs):
        if calls:
            raise KeyboardInterrupt  # the process is killed while the second row starts
        calls.append(row.name)
        return real(rep, row, *args, **kwargs)

    monkeypatch.setattr(drv, "run_row", killed_after_first)
    rows = ["vae-k1", "iwae-k5", "dreg-k5"]
    with pytest.raises(KeyboardInterrupt):
        drv.reproduce("iwae-table1", budget="smoke", out=out, data=mnist, rows=rows, progress=False)
    half = json.loads((out / TABLE_JSON).read_text())
    statuses = {e["name"]: e["status"] for e in half["rows"]}
    assert (
        statuses["vae-k1"] == "done" and statuses["iwae-k5"] == "running" and statuses["dreg-k5"] == "pending"
    )
    first = json.dumps(half["rows"][0], indent=1)
    metrics_bytes = (out / "rows/vae-k1/metrics.json").read_bytes()

    with pytest.raises(ValueError, match="pass --resume"):
        drv.reproduce("iwae-table1", budget="smoke", out=out, data=mnist, rows=rows, progress=False)
    with pytest.raises(ValueError, match="--budget quick"):
        drv.reproduce("iwae-table1", budget="quick", out=out, data=mnist, resume=True, progress=False)

    ran = []

    def recording(rep, row, *args, **kwargs):
        ran.append(row.name)
        return real(rep, row, *args, **kwargs)

    monkeypatch.setattr(drv, "run_row", recording)
    # --data left out: the table's own data spec is used
    table = drv.reproduce("iwae-table1", budget="smoke", out=out, resume=True, rows=rows, progress=False)
    assert ran == ["iwae-k5", "dreg-k5"]
    assert json.dumps(table["rows"][0], indent=1) == first
    assert (out / "rows/vae-k1/metrics.json").read_bytes() == metrics_bytes
    assert json.dumps(json.loads((out / TABLE_JSON).read_text())["rows"][0], indent=1) == first
    done = {e["name"]: e for e in table["rows"] if e["status"] == "done"}
    assert set(done) == set(rows)
    for e in done.values():
        assert e["steps"] == 3 and e["k"] == 8 and e["eval_points"] == 8 and e["hardware"]["cpu"]
        assert (out / e["run"] / "config.json").is_file()
    md = (out / TABLE_MD).read_text()
    assert md.count("| done |") == 3 and "| pending |" in md

    # a row killed during its evaluation (no metrics.json yet) continues from its checkpoint
    (out / "rows/dreg-k5/metrics.json").unlink()
    ran.clear()
    table = drv.reproduce("iwae-table1", budget="smoke", out=out, resume=True, rows=rows, progress=False)
    assert ran == ["dreg-k5"]
    assert next(e for e in table["rows"] if e["name"] == "dreg-k5")["steps"] == 3

    # a finished row folder trained with other settings is refused in one line, nothing touched
    assert drv.settings_mismatch(out / "rows/vae-k1", REP.row("vae-k1"), "smoke", mnist) == []
    config = json.loads((out / "rows/vae-k1/config.json").read_text())
    config["train"]["lr"] = 0.5
    config["train"]["threads"] = 3  # speed only: not a difference
    (out / "rows/vae-k1/config.json").write_text(json.dumps(config))
    assert drv.settings_mismatch(out / "rows/vae-k1", REP.row("vae-k1"), "smoke", mnist) == [
        "train.lr: 0.5 != 0.001"
    ]
    with pytest.raises(ValueError, match=r"row vae-k1: .* other settings .*train\.lr: 0\.5 != 0\.001"):
        drv.reproduce("iwae-table1", budget="smoke", out=out, resume=True, rows=rows, progress=False)
    assert (out / "rows/vae-k1/metrics.json").read_bytes() == metrics_bytes


def test_a_failed_row_is_recorded_and_retried_with_resume(tmp_path, mnist, monkeypatch):
    out = tmp_path / "table"
    real = drv.run_row

    def failing(rep, row, *args, **kwargs):
        if row.name == "vae-k1":
            raise ValueError("something broke\nsecond line")
        return real(rep, row, *args, **kwargs)

    monkeypatch.setattr(drv, "run_row", failing)
    table = drv.reproduce(
        "iwae-table1", budget="smoke", out=out, data=mnist, rows=["vae-k1", "iwae-k1"], progress=False
    )
    status = {e["name"]: e["status"] for e in table["rows"]}
    assert status["vae-k1"] == "failed: ValueError: something broke" and status["iwae-k1"] == "done"
    assert "failed: ValueError: something broke |" in (out / TABLE_MD).read_text()
    monkeypatch.setattr(drv, "run_row", real)
    table = drv.reproduce(
        "iwae-table1", budget="smoke", out=out, resume=True, rows=["vae-k1", "iwae-k1"], progress=False
    )
    assert {e["name"]: e["status"] for e in table["rows"]}["vae-k1"] == "done"


def test_missing_mnist_path_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PYRO_GEN_MNIST", raising=False)
    out = tmp_path / "t"
    assert main(["reproduce", "iwae-table1", "--budget", "smoke", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data mnist:PATH" in err[0] and "$PYRO_GEN_MNIST" in err[0]
    assert not out.exists()
    assert main(["reproduce", "iwae-table1", "--data", "digits", "--out", str(out)]) == 2
    assert "--data digits" in capsys.readouterr().err


def test_reproduce_list_and_name_required(capsys):
    assert main(["reproduce", "--list"]) == 0
    assert "iwae-table1" in capsys.readouterr().out
    assert main(["reproduce"]) == 2
    assert "reproduce --list" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# rows over several seeds, extra metrics, tables without likelihood columns
# --------------------------------------------------------------------------------------

SCORES = {0: 1.0, 1: 2.0, 2: 4.0}  # seed -> the fake run's main metric


def _fake_rep(seeds=(0, 1, 2)):
    from pyro_gen.experiments.reproduce.spec import Metric, Reproduction, Row

    def settings(budget):
        return {"run": {}, "train": {}, "trainer": {}, "model": {}}

    rows = (
        Row(
            "a",
            "Row A",
            3.0,
            "[P]",
            "the paper",
            family="gan",
            settings=settings,
            seeds=seeds,
            published_extra={"hq": 90.0},
            data="ring",
        ),
        Row("b", "Row B", None, "[P]", "the paper", unavailable="not available: no model"),
    )
    return Reproduction(
        name="fake-seeds",
        title="a fake table",
        paper="nobody 2000",
        metric="score",
        units="points",
        metric_key="score",
        sign=1.0,
        data="ring",
        rows=rows,
        budgets={"smoke": "fake", "quick": "fake"},
        extra_metrics=(Metric("hq", "HQ %", ".1f", 100.0, "percent"),),
        likelihood=False,
        lower_is_better=False,
    )


def _fake_run_row(calls, fail=None):
    def run_row(rep, row, budget, run_dir, data, device, progress, seed=None):
        calls.append(seed)
        if fail is not None and fail(seed):
            raise ValueError(f"seed {seed} broke\nmore")
        metrics = {"score": SCORES[seed], "hq": 0.9 + 0.01 * seed, "steps": 3, "epochs": 0.5, "seconds": 6.0}
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    return run_row


def test_seeds_per_budget_and_row_defaults():
    rep = _fake_rep(seeds={"smoke": (0, 1), "quick": (0, 1, 2, 3, 4)})
    assert rep.row("a").seeds_for("smoke") == (0, 1) and rep.row("a").seeds_for("quick") == (0, 1, 2, 3, 4)
    assert rep.row("a").seeds_for("paper") == () and rep.row("b").seeds_for("quick") == ()
    assert REP.row("iwae-k5").seeds_for("quick") == () and REP.extra_metrics == () and REP.likelihood


def test_a_row_over_seeds_shows_mean_std_and_extra_columns(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(drv, "run_row", _fake_run_row(calls))
    out = tmp_path / "t"
    table = drv.reproduce(_fake_rep(), budget="smoke", out=out, progress=False)
    assert calls == [0, 1, 2]
    e = table["rows"][0]
    mean = 7.0 / 3.0
    std = (sum((v - mean) ** 2 for v in SCORES.values()) / 2) ** 0.5  # sample std, n - 1
    assert e["status"] == "done" and e["seeds"] == [0, 1, 2] and e["seeds_done"] == 3
    assert e["ours"] == pytest.approx(mean, abs=1e-4) and e["ours_std"] == pytest.approx(std, abs=1e-4)
    assert e["difference"] == pytest.approx(mean - 3.0, abs=1e-4)
    assert e["extra"]["hq"] == pytest.approx(91.0) and e["extra_std"]["hq"] == pytest.approx(1.0)
    assert e["published_extra"] == {"hq": 90.0} and e["train_seconds"] == 18.0
    assert [r["run"] for r in e["per_seed"]] == [f"rows/a/seed-{s}" for s in (0, 1, 2)]
    assert [r["ours"] for r in e["per_seed"]] == [1.0, 2.0, 4.0]
    for s in (0, 1, 2):
        assert (out / f"rows/a/seed-{s}/metrics.json").is_file()
    md = (out / TABLE_MD).read_text()
    head = next(ln for ln in md.splitlines() if ln.startswith("| row |"))
    cols = [c.strip() for c in head.strip("|").split("|")]
    assert cols[:8] == [
        "row",
        "published",
        "source",
        "ours",
        "difference",
        "seeds",
        "HQ % published",
        "HQ % ours",
    ]
    assert "k (eval)" not in cols and "test points" not in cols and cols[8] == "steps"
    line = next(ln for ln in md.splitlines() if ln.startswith("| Row A |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:9] == [
        "Row A",
        "3.00",
        "[P]",
        f"{mean:.2f} ± {std:.2f}",
        f"{mean - 3:+.2f}",
        "3/3",
        "90.0",
        "91.0 ± 1.0",
        "3",
    ]
    assert cells[-1] == "done" and "not available: no model |" in md
    assert "HQ %: `hq` of metrics.json x 100, percent" in md and "sample standard deviation" in md
    assert table["data"] == "ring" and render_markdown(read_table(out)) == md


def test_resume_of_a_half_finished_row_over_seeds_runs_only_its_missing_seeds(tmp_path, monkeypatch):
    out = tmp_path / "t"
    calls = []
    fake = _fake_run_row(calls)

    def killed_at_second_seed(rep, row, *args, seed=None, **kwargs):
        if calls:
            raise KeyboardInterrupt
        return fake(rep, row, *args, seed=seed, **kwargs)

    monkeypatch.setattr(drv, "run_row", killed_at_second_seed)
    with pytest.raises(KeyboardInterrupt):
        drv.reproduce(_fake_rep(), budget="smoke", out=out, progress=False)
    half = read_table(out)["rows"][0]
    assert half["status"] == "running" and half["seeds_done"] == 1 and half["ours"] == 1.0
    assert half["ours_std"] is None and [r["status"] for r in half["per_seed"]] == [
        "done",
        "running",
        "pending",
    ]
    assert "| 1.00 | -2.00 | 1/3 |" in (out / TABLE_MD).read_text()
    first = (out / "rows/a/seed-0/metrics.json").read_bytes()

    calls.clear()
    monkeypatch.setattr(drv, "run_row", fake)
    table = drv.reproduce(_fake_rep(), budget="smoke", out=out, resume=True, progress=False)
    assert calls == [1, 2]
    assert (out / "rows/a/seed-0/metrics.json").read_bytes() == first
    assert table["rows"][0]["status"] == "done" and table["rows"][0]["seeds_done"] == 3
    assert table["rows"][0]["ours"] == pytest.approx(7.0 / 3.0, abs=1e-4)

    # resumed once more with everything done: nothing runs, the table reads the same
    calls.clear()
    again = drv.reproduce(_fake_rep(), budget="smoke", out=out, resume=True, progress=False)
    assert calls == [] and again["rows"] == table["rows"]


def test_a_failed_seed_is_recorded_the_next_seed_runs_and_resume_retries_it(tmp_path, monkeypatch):
    out = tmp_path / "t"
    calls = []
    monkeypatch.setattr(drv, "run_row", _fake_run_row(calls, fail=lambda s: s == 1))
    table = drv.reproduce(_fake_rep(), budget="smoke", out=out, progress=False)
    e = table["rows"][0]
    assert calls == [0, 1, 2] and e["seeds_done"] == 2
    assert e["status"] == "failed: seed 1: ValueError: seed 1 broke"
    assert e["ours"] == pytest.approx(2.5) and e["per_seed"][1]["status"].startswith("failed")
    calls.clear()
    monkeypatch.setattr(drv, "run_row", _fake_run_row(calls))
    table = drv.reproduce(_fake_rep(), budget="smoke", out=out, resume=True, progress=False)
    assert calls == [1] and table["rows"][0]["status"] == "done"


def test_a_real_row_over_two_seeds_trains_each_seed_in_its_own_folder(tmp_path, mnist):
    import dataclasses

    row = dataclasses.replace(REP.row("iwae-k1"), seeds=(0, 3))
    rep = dataclasses.replace(REP, name="iwae-seeds", rows=(row,))
    out = tmp_path / "t"
    table = drv.reproduce(rep, budget="smoke", out=out, data=mnist, progress=False)
    e = table["rows"][0]
    assert e["status"] == "done" and e["seeds_done"] == 2 and e["ours_std"] is not None
    seeds = [
        json.loads((out / f"rows/iwae-k1/seed-{s}/config.json").read_text())["train"]["seed"] for s in (0, 3)
    ]
    assert seeds == [0, 3]
    vals = [
        -json.loads((out / f"rows/iwae-k1/seed-{s}/metrics.json").read_text())["test_log_likelihood"]
        for s in (0, 3)
    ]
    assert e["ours"] == pytest.approx(sum(vals) / 2, abs=1e-3)
    md = (out / TABLE_MD).read_text()
    assert "| k (eval) | test points |" in md and "| seeds |" in md


def test_the_committed_iwae_table_reads_and_renders_as_it_was():
    from pathlib import Path

    d = Path(__file__).resolve().parents[2] / "benchmarks/results/reproduce/iwae-table1-quick-stages"
    table = read_table(d)
    assert render_markdown(table) == (d / TABLE_MD).read_text()


def test_an_extra_metric_missing_in_some_seeds_is_averaged_over_the_others_and_counted(tmp_path, monkeypatch):
    calls = []
    fake = _fake_run_row(calls)

    def no_hq_for_seed_1(rep, row, budget, run_dir, data, device, progress, seed=None):
        metrics = fake(rep, row, budget, run_dir, data, device, progress, seed=seed)
        if seed == 1:
            metrics["hq"] = float("nan")  # e.g. a KL without any high-quality sample
            (run_dir / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    monkeypatch.setattr(drv, "run_row", no_hq_for_seed_1)
    table = drv.reproduce(_fake_rep(), budget="smoke", out=tmp_path / "t", progress=False)
    e = table["rows"][0]
    assert e["per_seed"][1]["extra"]["hq"] is None and e["extra_seeds"]["hq"] == 2
    assert e["extra"]["hq"] == pytest.approx(91.0) and e["extra_std"]["hq"] == pytest.approx(1.4142, abs=1e-3)
    assert "| 91.0 ± 1.4 (2 of 3 seeds) |" in (tmp_path / "t" / TABLE_MD).read_text()
