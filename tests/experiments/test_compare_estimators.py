"""`pyro-gen compare estimators` on a user's program: same start, same draws, the known variance order."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from pyro_gen.data import load_data
from pyro_gen.experiments.estimators import (
    build_user,
    compare_user_estimators,
    guide_parameter_groups,
    user_estimator_table,
)

from .conftest import run_compare

# x_n ~ N(mu, noise^2 I), mu ~ N(0, 10^2 I); the guide N(loc, scale) over mu; noise is the model's
PROGRAM = textwrap.dedent(
    """
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro_gen.models import data_plate

    def model(x):
        noise = pyro.param("noise", torch.tensor(1.5), constraint=dist.constraints.positive)
        mu = pyro.sample("mu", dist.Normal(torch.zeros(x.shape[1]), 10.0).to_event(1))
        with data_plate(x):
            pyro.sample("obs", dist.Normal(mu, noise).to_event(1), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.zeros(x.shape[1]))
        scale = pyro.param("scale", torch.ones(x.shape[1]), constraint=dist.constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale).to_event(1))

    PAIR = (model, guide)
    """
)


@pytest.fixture()
def program(tmp_path):
    path = tmp_path / "prog.py"
    path.write_text(PROGRAM)
    data = tmp_path / "x.npy"
    np.save(data, (np.random.default_rng(1).normal(size=(50, 2)) + [1.0, -2.0]).astype(np.float32))
    return f"{path}:PAIR", str(data)


def test_parameters_are_grouped_by_whether_the_guide_uses_them(program):
    target, data = program
    model = build_user(target, load_data(data))()
    groups = guide_parameter_groups(model, torch.zeros(4, 2))
    assert [groups(n) for n in ("loc", "scale", "noise")] == ["guide", "guide", "model"]


def test_score_function_variance_is_above_reparameterization_from_the_same_start(program):
    target, data = program
    results, refused = compare_user_estimators(
        target,
        load_data(data),
        "reparam,score,stl",
        steps=10,
        batch_size=16,
        num_checkpoints=2,
        variance_draws=25,
        k=20,
        eval_particles=2,
        progress=False,
    )
    assert refused == {}
    v0 = {r["name"]: r["variance"][0] for r in results}
    assert all(v["step"] == 0 for v in v0.values())
    # REINFORCE is known to be far noisier than the pathwise gradient on a Gaussian guide
    assert v0["score"]["guide"]["total_variance"] > 10 * v0["reparam"]["guide"]["total_variance"]
    # same initialization and the same draws at step 0: the model's gradient is identical
    assert v0["score"]["model"]["total_variance"] == pytest.approx(v0["reparam"]["model"]["total_variance"])
    table = user_estimator_table(results, k=20).splitlines()
    variance = {row.split("|")[1].strip(): float(row.split("|")[5]) for row in table[2:]}
    assert variance["score"] > variance["reparam"]
    for r in results:
        assert (
            r["history"][-1]["step"] == 10
            and r["final"]["test_log_likelihood"] > r["final"]["test_elbo"] - 0.5
        )


def test_default_estimators_leave_out_those_that_need_local_latents(program):
    target, data = program
    results, refused = compare_user_estimators(
        target,
        load_data(data),
        "reparam,iwae:5,dreg:5",
        strict=False,
        steps=3,
        num_checkpoints=2,
        variance_draws=2,
        k=5,
        eval_particles=1,
        progress=False,
    )
    assert [r["name"] for r in results] == ["reparam"]
    assert set(refused) == {"iwae:5", "dreg:5"} and "outside the 'data' plate" in refused["iwae:5"]


def test_the_comparison_writes_one_report_folder(program, tmp_path):
    target, data = program
    out = tmp_path / "cmp"
    argv = ["estimators", "--model", target, "--data", data, "--estimators", "reparam,score-baseline"]
    argv += ["--steps", "8", "--checkpoints", "2", "--variance-draws", "3", "--k", "10", "--out", str(out)]
    assert run_compare([*argv, "--no-progress"]) == 0
    for name in (
        "report.md",
        "estimators.csv",
        "gradient_variance.csv",
        "comparison.json",
        "elbo_vs_seconds.png",
        "index.html",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["config"]["estimators"] == ["reparam", "score-baseline"]
    assert "## Guide gradient variance at checkpoints" in (out / "report.md").read_text()
