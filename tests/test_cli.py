import json

import numpy as np
import pytest

from pyro_gen.cli import main
from pyro_gen.registry import ModelFamily, families, get_family, register

METRIC_KEYS = {
    "model",
    "data",
    "estimator",
    "steps",
    "seconds",
    "train_elbo",
    "test_elbo",
    "test_log_likelihood",
    "test_bits_per_dim",
    "k",
}


def test_fit_vae_writes_every_promised_file_then_sample(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "fit",
            "vae",
            "--data",
            "digits",
            "--latent-dim",
            "2",
            "--hidden",
            "16",
            "--steps",
            "12",
            "--batch-size",
            "64",
            "--k",
            "8",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    assert f"report: {out}/metrics.json" in capsys.readouterr().out
    for name in (
        "metrics.json",
        "history.csv",
        "checkpoint.pt",
        "config.json",
        "elbo.png",
        "reconstructions.png",
        "samples.png",
        "latent_manifold.png",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["steps"] == 12 and metrics["k"] == 8 and metrics["model"] == "vae"
    # log p(x) >= ELBO in expectation, and bits/dim = -log p / (64 ln 2)
    assert metrics["test_log_likelihood"] > metrics["test_elbo"] - 0.5
    assert metrics["test_bits_per_dim"] == pytest.approx(-metrics["test_log_likelihood"] / (64 * np.log(2)))
    assert (out / "history.csv").read_text().splitlines()[0].startswith("step,epoch,train_elbo,test_elbo")

    npy = tmp_path / "s.npy"
    assert main(["sample", str(out), "--num", "7", "--out", str(npy)]) == 0
    arr = np.load(npy)
    assert arr.shape == (7, 8, 8) and arr.min() >= 0 and arr.max() <= 1
    assert npy.with_suffix(".png").is_file()


def test_resume_continues_a_cli_run(tmp_path):
    out = tmp_path / "run"
    args = [
        "fit",
        "vae",
        "--hidden",
        "8",
        "--batch-size",
        "128",
        "--k",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args + ["--epochs", "1"]) == 0
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 22


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["fit", "vae", "--data", f"mnist:{tmp_path / 'nope'}", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pyro-gen: error:") and "does not exist" in err and "\n" not in err
    assert main(["sample", str(tmp_path), "--out", str(tmp_path / "x.npy")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["fit", "vae", "--steps", "1", "--estimator", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "unknown estimator" in capsys.readouterr().err


def test_registry_has_vae_from_entry_point_and_accepts_plugins():
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group="pyro_gen.models")}
    assert eps["vae"].load() is get_family("vae")
    fam = ModelFamily(name="toy-test", summary="a toy", build=lambda data, options: None)
    register(fam)
    assert families()["toy-test"] is fam
    with pytest.raises(ValueError, match="already registered"):
        register(ModelFamily(name="toy-test", summary="other", build=lambda d, o: None))
    with pytest.raises(ValueError, match="unknown model family"):
        get_family("nonexistent")


def test_fit_says_what_the_evaluation_costs_and_eval_points_limits_it(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["fit", "vae", "--hidden", "8", "--steps", "3", "--k", "4", "--out", str(out), "--no-progress"]
    assert main([*args, "--eval-points", "40"]) == 0
    err = capsys.readouterr().err
    line = next(s for s in err.splitlines() if s.startswith("evaluating"))
    assert line.startswith("evaluating 40 test points at k=4: about ") and "--eval-points" in line
    assert f"pyro-gen evaluate {out}" in line
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_points"] == 40 and metrics["k"] == 4 and metrics["eval_seconds"] > 0
    assert json.loads((out / "config.json").read_text())["run"]["eval_points"] == 40
    assert main([*args, "--eval-points", "0", "--out", str(tmp_path / "r2")]) == 2
    assert "eval_points must be a positive integer, got 0" in capsys.readouterr().err


def test_adam_betas_is_refused_where_the_family_has_its_own_betas(tmp_path, capsys):
    out = tmp_path / "gan"
    args = ["fit", "gan", "--data", "ring", "--adam-betas", "0.5,0.9", "--steps", "1", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "--adam-betas: the gan family sets both players' Adam betas with --beta1 and --beta2" in err
    assert "\n" not in err and not out.exists()


def test_fit_model_is_the_user_family_and_both_spellings_are_documented(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "fit --model FILE.py:NAME" in capsys.readouterr().out
    assert "user" in families()
    with pytest.raises(SystemExit):
        main(["fit", "--model", "f.py:M", "--help"])  # the spelling reaches the user family's flags
    out = capsys.readouterr().out
    assert "--target" in out and "--eval-samples" in out and "--guide" in out
    assert "--kl-schedule" not in out  # trainer settings the family cannot honour are not offered


def test_fit_model_without_a_program_is_one_line(capsys):
    assert main(["fit", "user", "--steps", "2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "pyro-gen: error: the user family needs its program: --model FILE.py:NAME (or --target)"
    )
