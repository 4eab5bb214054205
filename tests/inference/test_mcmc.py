"""NUTS on the Gaussian mixture: label alignment, pointwise log-likelihood, convergence, PSIS-LOO."""

import math

import numpy as np
import pytest
import torch

from pyro_gen.data import sample_gaussian_mixture
from pyro_gen.diagnostics import loo, mcmc_diagnostics, pareto_k_threshold, to_inference_data
from pyro_gen.inference.em import initial_parameters
from pyro_gen.inference.mcmc import (
    align_components,
    fit_nuts,
    hungarian_permutation,
    log_predictive_density,
    match_components,
    pointwise_log_likelihood,
)
from pyro_gen.models.gmm import GaussianMixtureModel, MixtureParameters

TRUE_LOCS = torch.tensor([[-2.0], [2.0]])
TRUE_SCALES = torch.tensor([0.5, 0.5])


def test_align_components_undoes_label_switching_across_chains():
    """Draws whose labels were shuffled per draw (and per chain) are put back in order."""
    g = torch.Generator().manual_seed(0)
    c, s, k, d = 3, 40, 4, 2
    base = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    locs = base + 0.1 * torch.randn(c, s, k, d, generator=g)
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4]).expand(c, s, k).clone()
    scales = torch.arange(1.0, 5.0)[:, None].expand(c, s, k, d).clone()
    perms = torch.stack([torch.randperm(k, generator=g) for _ in range(c * s)]).reshape(c, s, k)
    shuffled = {
        "locs": torch.gather(locs, 2, perms[..., None].expand(-1, -1, -1, d)),
        "weights": torch.gather(weights, 2, perms),
        "scales": torch.gather(scales, 2, perms[..., None].expand(-1, -1, -1, d)),
    }
    aligned, found = align_components(shuffled, reference_locs=base)
    assert torch.allclose(aligned["locs"], locs)
    assert torch.equal(aligned["weights"], weights)
    assert torch.equal(aligned["scales"], scales)
    # without a reference the labels are consistent (up to one global relabelling)
    aligned2, _ = align_components(shuffled)
    first = aligned2["weights"][0, 0]
    assert torch.equal(aligned2["weights"], first.expand(c, s, k))


def test_align_components_bad_shape():
    with pytest.raises(ValueError, match="chains, draws, K, D"):
        align_components({"locs": torch.zeros(5, 3, 2)})


def test_pointwise_log_likelihood_matches_mixture_density():
    x, _ = sample_gaussian_mixture(30, TRUE_LOCS, TRUE_SCALES, seed=0)
    gmm = GaussianMixtureModel.from_data(x, 2, "diag")
    g = torch.Generator().manual_seed(1)
    draws = {
        "weights": torch.softmax(torch.randn(2, 3, 2, generator=g), -1),
        "locs": torch.randn(2, 3, 2, 1, generator=g),
        "scales": torch.rand(2, 3, 2, 1, generator=g) + 0.3,
    }
    ll = pointwise_log_likelihood(gmm, draws, x)
    assert ll.shape == (2, 3, 30)
    w, m, sd = draws["weights"][1, 2], draws["locs"][1, 2, :, 0], draws["scales"][1, 2, :, 0]
    dens = (w * torch.exp(-0.5 * ((x - m) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))).sum(1)
    assert torch.allclose(ll[1, 2], dens.log().double(), atol=1e-5)


def _small_problem(n=60):
    x, _ = sample_gaussian_mixture(n, TRUE_LOCS, TRUE_SCALES, seed=0)
    gmm = GaussianMixtureModel.from_data(x, 2, "diag")
    w0, m0, c0 = initial_parameters(x, 2, "diag", seed=0)
    return x, gmm, gmm.init_values(w0, m0, c0), m0


def test_tiny_nuts_run_posterior_near_truth():
    """A few NUTS draws already sit near the truth; result shape, alignment and LOO are consistent."""
    x, gmm, init, m0 = _small_problem()
    res = fit_nuts(
        gmm, x, num_samples=30, warmup_steps=30, num_chains=1, init=init, reference_locs=m0, progress=False
    )
    assert res.estimator == "nuts" and res.kind == "nuts"
    assert res.steps == 60 and res.epochs == 60.0  # warm-up + draws
    samples = res.params["samples"]
    assert samples["locs"].shape == (1, 30, 2, 1) and samples["weights"].shape == (1, 30, 2)
    mean = res.params["posterior_mean"]
    assert torch.allclose(mean.locs, TRUE_LOCS.double(), atol=0.35)
    assert torch.allclose(mean.weights, torch.tensor([0.5, 0.5], dtype=torch.float64), atol=0.2)
    lppd = log_predictive_density(res, x)
    assert lppd >= res.params["mean_log_likelihood"] - 1e-9  # Jensen: log E p >= E log p
    lo = loo(to_inference_data(res, x))
    assert lo["elpd_loo"] <= lppd * len(x) + 1e-6  # leaving a point out can only lower its density
    assert lo["p_loo"] > 0
    assert lo["elpd_loo_per_point"] == pytest.approx(lo["elpd_loo"] / len(x))
    assert lo["good_k"] == pytest.approx(min(1 - 1 / math.log10(30), 0.7))  # S = 30 draws
    assert lo["num_bad_k"] == int((lo["pareto_k"] > lo["good_k"]).sum())


def test_nuts_result_contract_and_inference_data_dims():
    x, gmm, init, m0 = _small_problem(40)
    res = fit_nuts(gmm, x, num_samples=12, warmup_steps=8, num_chains=2, init=init, progress=False)
    assert res.kind == "nuts" and res.steps == 2 * (12 + 8) and res.epochs == res.steps
    assert res.seconds > 0 and res.cpu_seconds > 0
    assert [r["chain"] for r in res.history] == [0, 1]
    assert [r["step"] for r in res.history] == [20, 40]
    assert res.history[-1]["seconds"] == pytest.approx(res.seconds)
    assert res.history[-1]["cpu_seconds"] == pytest.approx(res.cpu_seconds)
    assert res.history[0]["seconds"] < res.history[1]["seconds"]
    for row in res.history:
        assert row["eval_seconds"] == 0.0 and 0.0 <= row["accept_prob"] <= 1.0 and row["divergences"] >= 0
    idata = to_inference_data(res, x)
    assert idata.posterior["locs"].dims == ("chain", "draw", "component", "dim")
    assert idata.posterior["locs"].shape == (2, 12, 2, 1)
    assert idata.posterior["weights"].shape == (2, 12, 2)
    assert idata.log_likelihood["obs"].dims == ("chain", "draw", "data")
    assert idata.log_likelihood["obs"].shape == (2, 12, 40)
    ll = pointwise_log_likelihood(gmm, res.params["samples"], x)
    np.testing.assert_allclose(idata.log_likelihood["obs"].values, ll.numpy())
    assert idata.sample_stats["diverging"].shape == (2, 12)
    diag = mcmc_diagnostics(idata)
    assert diag["num_chains"] == 2 and diag["num_draws"] == 12
    assert diag["divergences"] == int(res.params["diverging"].sum())
    assert "log_likelihood" not in to_inference_data(res).groups()


def test_pareto_k_threshold_follows_sample_size():
    assert pareto_k_threshold(100) == pytest.approx(0.5)
    assert pareto_k_threshold(1000) == pytest.approx(2 / 3)
    assert pareto_k_threshold(10**6) == 0.7
    with pytest.raises(ValueError, match="at least 2 draws"):
        pareto_k_threshold(1)


def test_hungarian_matching_undoes_a_permutation():
    g = torch.Generator().manual_seed(0)
    ref = MixtureParameters(torch.full((4,), 0.25), torch.randn(4, 3, generator=g) * 5, torch.ones(4, 3))
    perm = torch.tensor([2, 0, 3, 1])
    shuffled = ref.permute(perm)
    back = shuffled.permute(match_components(shuffled, ref))
    assert torch.equal(back.locs, ref.locs)
    cost = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    assert hungarian_permutation(cost).tolist() == [1, 0]
    with pytest.raises(ValueError, match="square"):
        hungarian_permutation(torch.zeros(2, 3))


@pytest.mark.slow
def test_nuts_converges_on_small_mixture():
    """Two chains of NUTS on a 2-component 1-D mixture: R-hat < 1.01 and means near the truth."""
    x, gmm, init, m0 = _small_problem(100)
    res = fit_nuts(
        gmm, x, num_samples=800, warmup_steps=300, num_chains=2, init=init, reference_locs=m0, progress=False
    )
    assert res.params["max_rhat"] < 1.01
    assert res.params["divergences"] == 0
    mean = res.params["posterior_mean"]
    # the components are identified up to a permutation: put both in the order of their means
    order, true_order = mean.locs.reshape(2).argsort(), TRUE_LOCS.reshape(2).argsort()
    assert torch.allclose(mean.locs.reshape(2)[order], TRUE_LOCS.reshape(2).double()[true_order], atol=0.2)
    scales = mean.covariances.reshape(2).sqrt()[order]
    assert torch.allclose(scales, TRUE_SCALES.reshape(2).double()[true_order], atol=0.15)


def test_short_chains_warn_and_the_checks_follow_their_stated_rules():
    from pyro_gen.inference.mcmc import ConvergenceWarning, convergence_warnings

    x, gmm, init, m0 = _small_problem(40)
    with pytest.warns(ConvergenceWarning, match="bulk ESS"):
        res = fit_nuts(gmm, x, num_samples=12, warmup_steps=8, num_chains=2, init=init, progress=False)
    assert any("ESS" in w for w in res.params["warnings"])  # 24 draws cannot reach 200 effective
    assert convergence_warnings(1.0, 400.0, 0, 2) == []
    rhat, ess, div = convergence_warnings(1.02, 150.0, 3, 2)
    assert rhat.startswith("R-hat 1.020 > 1.01") and ess.startswith("bulk ESS 150 < 100 per chain")
    assert div.startswith("3 divergent transitions")
