"""The command line of the cvae and m2 families and of the VAE's --arch and --prior flags, on tiny runs."""

import json

import numpy as np
import pytest
import torch

from pyro_gen.cli import main
from pyro_gen.families.conditional import CVAE_FAMILY, M2_FAMILY
from pyro_gen.registry import families, register


@pytest.fixture(autouse=True)
def conditional_families():
    known = families()
    for fam in (CVAE_FAMILY, M2_FAMILY):
        if fam.name not in known:
            register(fam)


TINY = ["--hidden", "16", "--latent-dim", "2", "--steps", "6", "--eval-points", "12", "--no-progress"]


def test_fit_cvae_then_sample_and_reload(tmp_path):
    from pyro_gen.runs import load_run

    out = tmp_path / "cvae"
    assert main(["fit", "cvae", *TINY, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "cvae" and metrics["steps"] == 6
    assert metrics["test_log_likelihood"] > metrics["test_elbo"] - 0.5
    # bits/dim count the 64 pixels, not the label column
    assert metrics["test_bits_per_dim"] == pytest.approx(-metrics["test_log_likelihood"] / (64 * np.log(2)))
    assert (out / "samples.png").is_file()
    npy = tmp_path / "s.npy"
    assert main(["sample", str(out), "--num", "7", "--out", str(npy)]) == 0
    assert np.load(npy).shape == (7, 8, 8)
    model, config = load_run(out)
    assert model.num_classes == 10 and model.sample(3, label=4).shape == (3, 64)


def test_fit_m2_reports_test_accuracy(tmp_path):
    out = tmp_path / "m2"
    assert main(["fit", "m2", *TINY, "--labels", "20", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["estimator"] == "enum" and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["test_log_likelihood"] > metrics["test_elbo"] - 0.5
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["labels"] == 20 and config["data_info"]["shape"] == [8, 8]


def test_m2_and_conv_refusals_are_one_line(tmp_path, capsys):
    # m2 trains with TraceEnum_ELBO only: --estimator is not one of its flags
    with pytest.raises(SystemExit) as refused:
        main(["fit", "m2", "--estimator", "reparam", "--steps", "1", "--out", str(tmp_path / "a")])
    assert refused.value.code == 2 and "unrecognized arguments: --estimator" in capsys.readouterr().err
    assert main(["fit", "m2", "--labels", "5", "--steps", "1", "--out", str(tmp_path / "b")]) == 2
    assert "--labels must be between the number of classes (10)" in capsys.readouterr().err
    assert (
        main(
            ["fit", "vae", "--arch", "conv", "--data", "moons", "--steps", "1", "--out", str(tmp_path / "c")]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "--arch conv needs image data" in err and "\n" not in err
    args = [
        "fit",
        "vae",
        "--prior",
        "vamp",
        "--lower-latents",
        "4",
        "--steps",
        "1",
        "--out",
        str(tmp_path / "d"),
    ]
    assert main(args) == 2
    assert "--prior vamp needs one stochastic layer" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags", [["--arch", "conv", "--conv-channels", "4,8"], ["--prior", "vamp"], ["--prior", "flow"]]
)
def test_fit_vae_with_conv_arch_or_learned_prior_then_sample(tmp_path, flags):
    from pyro_gen.runs import load_run

    out = tmp_path / "run"
    assert main(["fit", "vae", *TINY, *flags, "--k", "4", "--out", str(out)]) == 0
    model, config = load_run(out)
    assert config["model"][flags[0][2:].replace("-", "_")] == flags[1]
    npy = tmp_path / "s.npy"
    torch.manual_seed(0)
    assert main(["sample", str(out), "--num", "5", "--out", str(npy)]) == 0
    arr = np.load(npy)
    assert arr.shape == (5, 8, 8) and arr.min() >= 0 and arr.max() <= 1


def test_the_runs_k_reaches_the_conditional_evaluation(tmp_path, monkeypatch):
    import pyro_gen.families.conditional as conditional

    seen = []
    real = conditional._likelihood_metrics

    def spy(model, x, d, seed, k):
        seen.append(k)
        return real(model, x, d, seed, k)

    monkeypatch.setattr(conditional, "_likelihood_metrics", spy)
    out = tmp_path / "cvae"
    assert main(["fit", "cvae", *TINY, "--k", "7", "--out", str(out)]) == 0
    assert seen == [7] and json.loads((out / "metrics.json").read_text())["k"] == 7


def test_m2_balanced_minibatches_resume_bit_for_bit_and_evaluate_on_the_holdout(tmp_path):
    from pyro_gen.inference.checkpoint import load_checkpoint

    flags = ["m2", "--hidden", "16", "--latent-dim", "2", "--labels", "20", "--labelled-batch", "5"]
    flags += ["--labelled-elbo-weight", "30", "--holdout", "100", "--eval-points", "12", "--k", "4"]
    flags += ["--batch-size", "32", "--checkpoint-every", "2", "--no-progress"]
    a, b = tmp_path / "split", tmp_path / "whole"
    assert main(["fit", *flags, "--steps", "3", "--out", str(a)]) == 0
    assert main(["fit", *flags, "--steps", "6", "--resume", "--out", str(a)]) == 0
    assert main(["fit", *flags, "--steps", "6", "--out", str(b)]) == 0
    sa, sb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    assert sa["loop"]["step"] == sb["loop"]["step"] == 6
    for key, value in sb["modules"]["model"].items():
        assert torch.equal(sa["modules"]["model"][key], value), key
    metrics = json.loads((b / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "holdout: the last 100 training images"
    config = json.loads((b / "config.json").read_text())
    assert config["model"]["labelled_batch"] == 5 and config["model"]["labelled_share"] is None
