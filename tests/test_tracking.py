"""--track tensorboard | mlflow: what a run logs is read back from the store, at the logged steps,
and a resumed run appends to the same store without logging a step twice."""

import csv
import json
import os
import sys
from pathlib import Path

import pytest

from pyro_gen.runs import run_fit
from pyro_gen.runs.tracking import (
    EXPERIMENT,
    MLflowTracker,
    TensorBoardTracker,
    check_tracker,
    flatten_config,
    metric_tag,
    open_tracker,
)

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

TINY = dict(k=4, eval_points=20, threads=1, log_every=10, batch_size=64, progress=False)
VAE_OPTIONS = {"latent_dim": 2, "hidden": [16]}


def _fit(out, steps, track, resume=False):
    return run_fit(
        "vae", "digits", out=out, steps=steps, track=track, resume=resume, options=VAE_OPTIONS, **TINY
    )


def _history(run):
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _tensorboard(folder):
    """Return ``(scalars {tag: [(step, value)]}, all tags)`` of the event files in ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]}
    return scalars, tags


def _mlflow(folder):
    """Return ``(client, runs)`` of the MLflow file store in ``folder``."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=Path(folder).resolve().as_uri())
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client, client.search_runs([exp.experiment_id])


def _metric(client, run_id, key):
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_metric_tags_and_flat_config():
    assert metric_tag("test_elbo") == "heldout/test_elbo"
    assert metric_tag("lr") == "optim/lr"
    assert metric_tag("seconds") == "time/seconds"
    assert metric_tag("train_elbo") == "train/train_elbo"
    assert metric_tag("modes_captured") == "samples/modes_captured"
    flat = flatten_config({"run": {"data": "digits", "k": 5}, "model": {"hidden": [16, 8]}, "x": None})
    assert flat == {"run.data": "digits", "run.k": "5", "model.hidden": "[16, 8]", "x": "None"}


def test_tensorboard_events_hold_the_history_at_its_steps(tmp_path):
    run = tmp_path / "run"
    metrics = _fit(run, 30, "tensorboard")
    scalars, tags = _tensorboard(run / "tensorboard")
    rows = _history(run)
    assert [int(r["step"]) for r in rows] == [10, 20, 30]
    for key, tag in (
        ("train_elbo", "train/train_elbo"),
        ("test_elbo", "heldout/test_elbo"),
        ("lr", "optim/lr"),
    ):
        assert [s for s, _ in scalars[tag]] == [10, 20, 30], tag
        assert [v for _, v in scalars[tag]] == pytest.approx([float(r[key]) for r in rows], rel=1e-6), tag
    assert scalars["final/test_log_likelihood"] == [
        (30, pytest.approx(metrics["test_log_likelihood"], rel=1e-6))
    ]
    assert "figures/elbo" in tags["images"] and "figures/samples" in tags["images"]
    assert "config/text_summary" in tags["tensors"]
    assert (run / "index.html").is_file()


def test_mlflow_store_holds_metrics_params_and_figures(tmp_path):
    run = tmp_path / "run"
    metrics = _fit(run, 30, "mlflow")
    client, runs = _mlflow(run / "mlruns")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run_id = runs[0].info.run_id
    rows = _history(run)
    got = _metric(client, run_id, "train/train_elbo")
    assert [s for s, _ in got] == [10, 20, 30]
    assert [v for _, v in got] == pytest.approx([float(r["train_elbo"]) for r in rows], rel=1e-6)
    assert [s for s, _ in _metric(client, run_id, "heldout/test_elbo")] == [10, 20, 30]
    assert _metric(client, run_id, "final/test_log_likelihood") == [
        (30, pytest.approx(metrics["test_log_likelihood"], rel=1e-6))
    ]
    config = json.loads((run / "config.json").read_text())
    params = runs[0].data.params
    assert params["train.lr"] == str(config["train"]["lr"]) and params["run.data"] == "digits"
    assert runs[0].data.tags["final.model"] == "vae"
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert {"figures/elbo.png", "figures/samples.png"} <= figures
    assert {"index.html", "metrics.json"} <= {a.path for a in client.list_artifacts(run_id)}


@pytest.mark.parametrize("track", ["tensorboard", "mlflow"])
def test_a_resumed_run_appends_to_the_same_store(tmp_path, track):
    run = tmp_path / "run"
    _fit(run, 20, track)
    _fit(run, 40, track, resume=True)
    if track == "tensorboard":
        scalars, _ = _tensorboard(run / "tensorboard")
        steps = {tag: [s for s, _ in scalars[tag]] for tag in ("train/train_elbo", "heldout/test_elbo")}
        final = [s for s, _ in scalars["final/steps"]]
    else:
        client, runs = _mlflow(run / "mlruns")
        assert len(runs) == 1  # the same MLflow run continued
        run_id = runs[0].info.run_id
        steps = {
            t: [s for s, _ in _metric(client, run_id, t)] for t in ("train/train_elbo", "heldout/test_elbo")
        }
        final = [s for s, _ in _metric(client, run_id, "final/steps")]
    assert steps == {"train/train_elbo": [10, 20, 30, 40], "heldout/test_elbo": [10, 20, 30, 40]}
    assert final == [20, 40]


@pytest.mark.parametrize("cls", [TensorBoardTracker, MLflowTracker])
def test_steps_a_store_holds_are_never_logged_again(tmp_path, cls):
    """A run that logged beyond its last checkpoint and resumed from it: the rows it repeats are skipped."""

    class Recorder:  # the shape of GradientVarianceRecorder's rows
        rows = [{"step": 0, "encoder": {"total_variance": 4.0, "snr": 0.5}, "seconds": 0.1}]

    with cls(tmp_path, resume=False) as tracker:
        tracker.watch([Recorder(), print])
        for step in (10, 20, 30):
            tracker.log_row({"step": step, "epoch": step / 10, "train_elbo": -float(step), "lr": 0.1})
    with cls(tmp_path, resume=True) as tracker:
        tracker.log_rows([{"step": s, "train_elbo": -1000.0 - s, "note": "text"} for s in (20, 30, 40)])
        assert tracker.logged == 1  # only step 40 is new
    if cls is TensorBoardTracker:
        scalars, _ = _tensorboard(tmp_path / "tensorboard")
        elbo, grad = scalars["train/train_elbo"], scalars["gradient/encoder/total_variance"]
    else:
        client, runs = _mlflow(tmp_path / "mlruns")
        assert len(runs) == 1
        elbo = _metric(client, runs[0].info.run_id, "train/train_elbo")
        grad = _metric(client, runs[0].info.run_id, "gradient/encoder/total_variance")
    assert sorted(elbo) == [(10, -10.0), (20, -20.0), (30, -30.0), (40, -1040.0)]
    assert grad == [(0, 4.0)]


def test_a_fresh_run_replaces_an_old_store(tmp_path):
    with TensorBoardTracker(tmp_path) as tracker:
        tracker.log_row({"step": 5, "train_elbo": 1.0})
    with TensorBoardTracker(tmp_path) as tracker:
        tracker.log_row({"step": 5, "train_elbo": 2.0})
    scalars, _ = _tensorboard(tmp_path / "tensorboard")
    assert scalars["train/train_elbo"] == [(5, 2.0)]


@pytest.mark.parametrize("track,module", [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_missing_tracker_package_is_one_clear_line(tmp_path, monkeypatch, capsys, track, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(ValueError, match=f"--track {track} needs the .* package, which is not installed"):
        check_tracker(track)
    from pyro_gen.cli import main

    code = main(
        ["fit", "vae", "--steps", "2", "--track", track, "--out", str(tmp_path / "r"), "--no-progress"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install" in err[0] and err[0].startswith("pyro-gen: error:")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_unknown_tracker_is_refused():
    with pytest.raises(ValueError, match="--track must be one of"):
        open_tracker("wandb", ".")
    assert open_tracker("none", ".") is None


def test_a_custom_trainer_is_tracked_from_its_history(tmp_path):
    """EM keeps its own loop (no row callbacks): its history reaches the store when the run ends."""
    run = tmp_path / "gmm"
    run_fit(
        "gmm",
        "moons",
        out=run,
        options={"components": 3, "max_iter": 20},
        track="tensorboard",
        progress=False,
    )
    scalars, _ = _tensorboard(run / "tensorboard")
    rows = _history(run)
    assert rows and [s for s, _ in scalars["train/log_likelihood"]] == [int(r["step"]) for r in rows]


def test_gradient_variance_measured_during_fit_reaches_the_store(tmp_path):
    import torch

    from pyro_gen.inference import fit
    from pyro_gen.inference.gradients import GradientVarianceRecorder
    from pyro_gen.models.vae import VAE

    torch.manual_seed(0)
    data = torch.bernoulli(torch.full((64, 16), 0.3))
    model = VAE(16, latent_dim=2, hidden=(8,))
    recorder = GradientVarianceRecorder(model, "reparam", data[:16], num_draws=3, every=4, num_data=64)
    with TensorBoardTracker(tmp_path) as tracker:
        tracker.watch([recorder])
        result = fit(
            model, data, steps=8, batch_size=16, log_every=4, progress=False, callbacks=[recorder, tracker]
        )
        tracker.log_rows(result.history)
    scalars, _ = _tensorboard(tmp_path / "tensorboard")
    assert [r["step"] for r in recorder.rows] == [4, 8]
    for group in ("encoder", "decoder"):
        got = scalars[f"gradient/{group}/total_variance"]
        assert got == [
            (r["step"], pytest.approx(r[group]["total_variance"], rel=1e-6)) for r in recorder.rows
        ]
    assert [s for s, _ in scalars["train/train_elbo"]] == [4, 8]


def test_overwrite_drops_the_old_runs_tracker_logs(tmp_path):
    run = tmp_path / "run"
    _fit(run, 10, "tensorboard")
    assert any((run / "tensorboard").iterdir())
    run_fit("vae", "digits", out=run, steps=10, overwrite=True, options=VAE_OPTIONS, **TINY)
    assert not (run / "tensorboard").exists() and (run / "index.html").is_file()


def test_evaluating_a_tracked_run_rewrites_its_page_and_logs_no_step_twice(tmp_path):
    from pyro_gen.runs import evaluate_run

    run = tmp_path / "run"
    _fit(run, 10, "tensorboard")
    metrics = evaluate_run(run, points=30, k=4, progress=False)
    assert metrics["eval_points"] == 30
    assert ">30<" in (run / "index.html").read_text()
    scalars, _ = _tensorboard(run / "tensorboard")
    assert all(len({s for s, _ in pts}) == len(pts) for pts in scalars.values())
    assert scalars["final/eval_points"] == [(10, 20.0)]  # the first evaluation's, kept at its step
