"""MCMC runs through the same conversion: R-hat, ESS, divergences, LOO and model comparison."""

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS

from pyro_gen.diagnostics import compare, loo, mcmc_diagnostics, to_inference_data
from pyro_gen.models.base import data_plate

# Pyro draws chains one after another (with this warning) when there are fewer free CPUs.
pytestmark = pytest.mark.filterwarnings("ignore:num_chains=2 is more than available_cpu")


def _run(model, x, seed=0, num_chains=2, num_samples=300, warmup_steps=150):
    pyro.set_rng_seed(seed)
    mcmc = MCMC(
        NUTS(model),
        num_samples=num_samples,
        warmup_steps=warmup_steps,
        num_chains=num_chains,
        disable_progbar=True,
    )
    mcmc.run(x)
    return mcmc


def test_mcmc_on_conjugate_model_matches_closed_form(conj, normal_data):
    mcmc = _run(conj.normal_model, normal_data)
    idata = to_inference_data(mcmc)
    n = normal_data.shape[0]
    assert {"posterior", "posterior_predictive", "log_likelihood", "observed_data", "sample_stats"} <= set(
        idata.groups()
    )
    assert idata.posterior["mu"].shape == (2, 300)
    assert idata.posterior_predictive["x"].dims == ("chain", "draw", "data")
    assert idata.posterior_predictive["x"].shape == (2, 300, n)
    assert idata.log_likelihood["x"].dims == ("chain", "draw", "data")
    assert idata.observed_data["x"].dims == ("data",)
    # what az.from_pyro drops and we fill: dims from plates, posterior_predictive, lp, acceptance
    assert idata.sample_stats["lp"].shape == (2, 300)
    assert all(0.5 < a <= 1.0 for a in idata.sample_stats.attrs["acceptance_rate"])
    mu = torch.as_tensor(idata.posterior["mu"].values)
    lp = dist.Normal(0.0, 3.0).log_prob(mu) + dist.Normal(mu[..., None], 1.0).log_prob(normal_data[:, 0]).sum(
        -1
    )
    np.testing.assert_allclose(idata.sample_stats["lp"].values, lp.numpy(), rtol=1e-4, atol=1e-3)

    diag = mcmc_diagnostics(idata)
    assert diag["max_rhat"] < 1.05
    assert diag["divergences"] == 0
    assert diag["min_ess_bulk"] > 100
    mean, sd = conj.exact_posterior(normal_data)
    mcse = float(diag["table"].loc["mu", "mcse_mean"])
    assert abs(float(idata.posterior["mu"].mean()) - mean) < 4 * mcse
    assert float(idata.posterior["mu"].std()) == pytest.approx(sd, rel=0.15)

    # LOO from our pointwise log-likelihood equals LOO from one computed by hand
    by_hand = dist.Normal(mu[..., None], 1.0).log_prob(normal_data[:, 0]).numpy()
    ref = az.from_dict(posterior={"mu": mu.numpy()}, log_likelihood={"x": by_hand})
    ours = loo(idata)
    assert ours["elpd_loo"] == pytest.approx(float(az.loo(ref).elpd_loo), abs=1e-3)
    assert ours["num_bad_k"] == 0
    assert ours["pareto_k"].shape == (n,)


def test_compare_ranks_the_true_noise_model_first(conj, normal_data):
    def wrong_noise(x):  # the same model with a noise scale half the true one
        mu = pyro.sample("mu", dist.Normal(0.0, 3.0))
        with data_plate(x):
            pyro.sample("x", dist.Normal(mu, 0.5), obs=x[:, 0])

    runs = {
        name: to_inference_data(
            _run(fn, normal_data, num_chains=1, num_samples=300, warmup_steps=100), posterior_predictive=False
        )
        for name, fn in (("right", conj.normal_model), ("wrong", wrong_noise))
    }
    table = compare(runs)
    assert table.index[0] == "right"
    # the true-noise model is better by more than twice the standard error of the difference
    assert table.loc["wrong", "elpd_diff"] > max(10.0, 2 * table.loc["wrong", "dse"])


def test_rhat_flags_chains_that_disagree():
    # two "chains" drawn around different means: what two SVI runs stuck in different modes look like
    rng = np.random.default_rng(0)
    post = np.stack([rng.normal(0.0, 1.0, 500), rng.normal(3.0, 1.0, 500)])
    diag = mcmc_diagnostics(az.from_dict(posterior={"theta": post}))
    assert diag["max_rhat"] > 1.1
    assert diag["verdicts"]["r_hat"].startswith("chains disagree")


def test_bad_inputs(conj, normal_data):
    with pytest.raises(ValueError, match="no samples"):
        to_inference_data(MCMC(NUTS(conj.normal_model), num_samples=10, warmup_steps=10))
    no_ll = az.from_dict(posterior={"theta": np.zeros((2, 10))})
    with pytest.raises(ValueError, match="log_likelihood"):
        loo(no_ll)
    with pytest.raises(ValueError, match="at least two"):
        compare({"a": no_ll})
