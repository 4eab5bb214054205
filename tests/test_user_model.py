"""A user's own program from a file, through every verb of the command line."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from pyro_gen.cli import main, model_spelling
from pyro_gen.families.user import load_target, predictive_log_likelihood, program_pair

PROGRAM = textwrap.dedent(
    """
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro_gen.models import data_plate

    def model(x):
        mu = pyro.sample("mu", dist.Normal(torch.zeros(x.shape[1]), 10.0).to_event(1))
        with data_plate(x):
            pyro.sample("obs", dist.Normal(mu, 1.0).to_event(1), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.zeros(x.shape[1]))
        scale = pyro.param("scale", torch.ones(x.shape[1]), constraint=dist.constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale).to_event(1))

    PAIR = (model, guide)
    ALONE = model

    class Program:
        def model(self, x):
            return model(x)

        def guide(self, x):
            return guide(x)

    OBJECT = Program()

    def make(shape):
        assert shape == (2,), shape
        return Program()

    def wrong_guide(x):
        pyro.sample("nu", dist.Normal(0.0, 1.0))

    MISMATCH = (model, wrong_guide)
    NOT_A_MODEL = 3

    def local_model(x):
        with data_plate(x):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            lik = dist.Normal(z.unsqueeze(-1), 1.0).expand([x.shape[0], x.shape[1]])
            pyro.sample("obs", lik.to_event(1), obs=x)

    LOCAL = local_model
    """
)


@pytest.fixture()
def files(tmp_path):
    program = tmp_path / "prog.py"
    program.write_text(PROGRAM)
    rng = np.random.default_rng(0)
    data = tmp_path / "x.npy"
    np.save(data, (rng.normal(size=(60, 2)) + [1.0, -2.0]).astype(np.float32))
    return program, data


def _fit(program, data, out, *extra):
    argv = ["fit", "--model", f"{program}:PAIR", "--data", str(data), "--out", str(out), "--no-progress"]
    return main([*argv, "--eval-samples", "50", *extra])


def test_fit_resume_sample_diagnose_evaluate_from_the_command_line(files, tmp_path, capsys):
    program, data = files
    run = tmp_path / "run"
    assert _fit(program, data, run, "--steps", "40") == 0
    config = json.loads((run / "config.json").read_text())
    assert config["family"] == "user"
    assert config["model"]["target"] == f"{program.resolve()}:PAIR"
    assert config["run"]["data"] == str(data.resolve())
    assert _fit(program, data, run, "--steps", "80", "--resume") == 0
    straight = tmp_path / "straight"
    assert _fit(program, data, straight, "--steps", "80") == 0
    a = torch.load(run / "checkpoint.pt", weights_only=False)["param_store"]["params"]
    b = torch.load(straight / "checkpoint.pt", weights_only=False)["param_store"]["params"]
    assert a.keys() == {"loc", "scale"} and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 80 and metrics["likelihood_kind"] == "importance"
    # held-out log-likelihood of N(mu, 1) data in 2-D: about -2 * 1.42 nats, above the ELBO
    assert -3.6 < metrics["test_log_likelihood"] < -2.3
    assert metrics["test_log_likelihood"] > metrics["test_elbo"] - 0.05

    assert main(["sample", str(run), "--num", "7", "--out", str(tmp_path / "s.npy")]) == 0
    draws = np.load(tmp_path / "s.npy")
    assert draws.shape == (7, 2)
    assert main(["evaluate", str(run), "--no-progress"]) == 0
    assert (
        main(["diagnose", str(run), "--no-progress", "--num-samples", "30", "--k", "40", "--num-chains", "2"])
        == 0
    )
    out = capsys.readouterr().out
    assert "PSIS k-hat" in out and "PSIS-LOO" in out
    # a guide over global latents is diagnosed against the posterior it approximates: all 48 training rows
    assert "(user, 48 train points)" in out
    assert json.loads((run / "diagnostics.json").read_text())["data_rows"] == "train"


def test_the_conventions_give_the_same_pair(files):
    program, _ = files
    for name in ("PAIR", "OBJECT", "make"):
        _, model_fn, guide_fn = program_pair(load_target(f"{program}:{name}"), (2,), name)
        assert callable(model_fn) and callable(guide_fn), name
    _, model_fn, guide_fn = program_pair(load_target(f"{program}:ALONE"), (2,), "ALONE")
    assert callable(model_fn) and guide_fn is None


def test_a_program_without_a_guide_gets_autonormal_and_its_posterior(files, tmp_path):
    program, data = files
    out = tmp_path / "auto"
    argv = ["fit", "--model", f"{program}:ALONE", "--data", str(data), "--out", str(out), "--no-progress"]
    assert main([*argv, "--steps", "250", "--lr", "0.1", "--eval-samples", "20"]) == 0
    assert json.loads((out / "metrics.json").read_text())["guide"] == "AutoNormal"
    from pyro_gen.runs import load_run

    model, _ = load_run(out)
    x = torch.from_numpy(np.load(data))
    loc = model.autoguide.locs.mu.detach()
    # conjugate: the posterior mean is the sample mean shrunk by n / (n + 1/100), within its sd
    assert torch.allclose(loc, x.mean(0), atol=0.35)


def test_model_spelling_maps_to_the_user_family():
    assert model_spelling(["fit", "--model", "f.py:M", "--steps", "3"]) == [
        "fit",
        "user",
        "--target",
        "f.py:M",
        "--steps",
        "3",
    ]
    assert model_spelling(["--debug", "fit", "--model=f.py:M"]) == [
        "--debug",
        "fit",
        "user",
        "--target",
        "f.py:M",
    ]
    assert model_spelling(["compare", "estimators", "--model", "f.py:M"])[0] == "compare"


def test_each_bad_target_gives_one_line_and_status_2(files, tmp_path, capsys):
    program, data = files
    cases = {
        f"{tmp_path}/nowhere.py:PAIR": "no such file",
        f"{program}:NOPE": "has no name 'NOPE'",
        f"{program}:NOT_A_MODEL": "has no model",
        f"{program}:MISMATCH": "the guide's sample sites do not match the model's latent sites",
        f"{program}:LOCAL": "lie in the 'data' plate",
        "no_such_package_xyz.mod:M": "cannot import",
        f"{program}": "give FILE.py:NAME",
    }
    broken = tmp_path / "broken.py"
    broken.write_text("def model(x):\n    return (\n")
    cases[f"{broken}:model"] = "importing it failed (SyntaxError"
    for target, words in cases.items():
        rc = main(
            ["fit", "--model", target, "--data", str(data), "--out", str(tmp_path / "bad"), "--steps", "2"]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and words in err[0], (target, err)


def test_predictive_log_likelihood_matches_the_closed_form(files):
    # with the guide at the exact posterior the estimate is the posterior predictive density
    # N(x_n; m, (1 + s^2) I): mean over the guide's draws is exact in expectation
    import pyro

    program, _ = files
    from pyro_gen.families.user import UserConfig, build_user_model

    pyro.clear_param_store()
    x = torch.randn(30, 2)
    split = type("S", (), {"train": x, "shape": (2,)})()
    model = build_user_model(split, UserConfig(target=f"{program}:PAIR"))
    m, s = torch.tensor([0.5, -1.0]), torch.tensor([0.3, 0.2])
    pyro.get_param_store()["loc"] = m
    pyro.get_param_store()["scale"] = s
    pyro.set_rng_seed(0)
    got = predictive_log_likelihood(model, x[:5], 1500)
    exact = torch.distributions.Normal(m, (1 + s**2).sqrt()).log_prob(x[:5]).sum(-1).double()
    assert torch.allclose(got, exact, atol=0.03)


def test_compare_estimators_from_the_command_line(files, tmp_path, capsys):
    program, data = files
    out = tmp_path / "cmp"
    argv = ["compare", "estimators", "--model", f"{program}:PAIR", "--data", str(data), "--out", str(out)]
    argv += ["--estimators", "reparam,score", "--steps", "20", "--checkpoints", "2", "--variance-draws", "5"]
    assert main([*argv, "--k", "20", "--batch-size", "16", "--no-progress"]) == 0
    res = json.loads((out / "comparison.json").read_text())["results"]
    assert [r["name"] for r in res] == ["reparam", "score"]
    assert (out / "report.md").is_file() and (out / "gradient_variance.png").stat().st_size > 1000
    assert main([*argv[:-2], "--estimators", "iwae:5", "--steps", "5", "--no-progress"]) == 2
    assert "--estimators iwae:5: it cannot train" in capsys.readouterr().err


def test_evaluate_refuses_k_for_a_user_run(files, tmp_path, capsys):
    program, data = files
    run = tmp_path / "run"
    assert _fit(program, data, run, "--steps", "5") == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", "10"]) == 2
    assert "--eval-samples" in capsys.readouterr().err
    config = json.loads((run / "config.json").read_text())
    assert main(["fit", "--config", str(run / "config.json"), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["model"] == config["model"] and again["train"]["steps"] == 5


@pytest.mark.parametrize(
    ("guide", "name"), [("lowrank", "AutoLowRankMultivariateNormal"), ("iaf", "AutoIAFNormal")]
)
def test_guide_replaces_the_programs_guide(files, tmp_path, guide, name):
    program, data = files
    run = tmp_path / guide
    assert _fit(program, data, run, "--steps", "3", "--guide", guide) == 0
    assert json.loads((run / "metrics.json").read_text())["guide"] == name
    from pyro_gen.runs import load_run

    model, _ = load_run(run)  # the automatic guide's parameters are restored
    assert model.guide_name == name and any(n.startswith("autoguide.") for n, _ in model.named_parameters())


def test_torchrun_refuses_a_program_whose_parameters_are_all_pyro_params(files, monkeypatch):
    import pyro

    from pyro_gen.families.user import UserConfig, build_user_model

    program, _ = files
    split = type("S", (), {"train": torch.randn(8, 2), "shape": (2,)})()
    monkeypatch.setenv("WORLD_SIZE", "2")
    pyro.clear_param_store()
    with pytest.raises(ValueError, match="under torchrun the parameters must live in an nn.Module"):
        build_user_model(split, UserConfig(target=f"{program}:PAIR"))
    model = build_user_model(split, UserConfig(target=f"{program}:PAIR", guide="normal"))
    assert any(p.requires_grad for p in model.parameters())  # an automatic guide's are shared
