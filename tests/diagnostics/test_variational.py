"""Variational diagnostics against closed forms: k-hat, IS gap, KL per dim, collapse, amortization gap."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

from pyro_gen.data import load_data
from pyro_gen.diagnostics import (
    active_units,
    amortization_gap,
    importance_gap,
    khat_from_inference_data,
    khat_verdict,
    kl_per_dim,
    psis_diagnostic,
    psis_khat,
    to_inference_data,
)
from pyro_gen.inference import fit
from pyro_gen.models.base import data_plate
from pyro_gen.models.vae import VAE


def test_exact_posterior_guide_has_small_khat_and_narrow_guide_large(conj, normal_data):
    mean, sd = conj.exact_posterior(normal_data)
    exact = psis_diagnostic(conj.normal_model, normal_data, conj.fixed_guide(mean, sd), num_samples=2000)
    pyro.set_rng_seed(0)
    # a tenth of the posterior's width: the weights' true tail index is 1 - 0.1^2 = 0.99
    narrow = psis_diagnostic(
        conj.normal_model, normal_data, conj.fixed_guide(mean, 0.1 * sd), num_samples=10000
    )
    assert exact["per_point"] is False
    assert exact["khat"] < 0.5
    assert exact["verdict"].startswith("good")
    assert narrow["khat"] > 0.7
    assert narrow["verdict"].startswith(("poor", "very poor"))


def test_khat_from_inference_data_agrees_with_direct(conj, normal_data):
    mean, sd = conj.exact_posterior(normal_data)
    idata = to_inference_data(
        conj.normal_model, normal_data, guide=conj.fixed_guide(mean, 0.2 * sd), num_samples=1000, num_chains=2
    )
    assert khat_from_inference_data(idata)["khat"] > 0.7


def test_importance_log_likelihood_matches_closed_form_with_zero_gap(conj, normal_data):
    mean, sd = conj.exact_posterior(normal_data)
    n = normal_data.shape[0]
    exact = conj.exact_log_marginal(normal_data) / n
    good = importance_gap(conj.normal_model, normal_data, conj.fixed_guide(mean, sd), k=500)
    assert good["log_likelihood"] == pytest.approx(exact, abs=1e-4)
    assert good["gap"] == pytest.approx(0.0, abs=1e-4)
    # a wider guide: the ELBO drops by KL(q || posterior) / n, the IS estimate stays close
    wide = importance_gap(conj.normal_model, normal_data, conj.fixed_guide(mean, 2 * sd), k=4000)
    kl = float(torch.distributions.kl_divergence(dist.Normal(mean, 2 * sd), dist.Normal(mean, sd)))
    assert wide["elbo"] == pytest.approx(exact - kl / n, abs=0.01)
    assert wide["log_likelihood"] == pytest.approx(exact, abs=0.01)


def test_per_point_khat_for_amortized_guides(conj, local_data):
    exact = psis_diagnostic(conj.local_model, local_data, conj.local_encoder(), num_samples=1000)
    narrow = psis_diagnostic(
        conj.local_model, local_data, conj.local_encoder(scale_factor=0.2), num_samples=1000
    )
    assert exact["per_point"] is True
    assert exact["khat"].shape == (local_data.shape[0],)
    assert (exact["khat"] < 0.5).all() and exact["fraction_good"] == 1.0
    assert (narrow["khat"] > 0.7).mean() > 0.9
    assert narrow["fraction_bad"] > 0.9


def test_amortized_importance_gap_matches_closed_form(conj, local_data):
    s2 = conj.local_noise**2
    exact = float(dist.Normal(0.0, math.sqrt(1 + s2)).log_prob(local_data).sum(-1).mean())
    res = importance_gap(conj.local_model, local_data, conj.local_encoder(), k=200)
    assert res["log_likelihood"] == pytest.approx(exact, abs=1e-4)
    assert res["gap"] == pytest.approx(0.0, abs=1e-4)


def test_kl_per_dim_matches_closed_form(conj, local_data):
    res = kl_per_dim(conj.local_model, local_data, conj.local_encoder(shift=0.5, scale_factor=0.8))
    loc, scale = conj.local_posterior(local_data)
    expected = torch.distributions.kl_divergence(dist.Normal(loc + 0.5, 0.8 * scale), dist.Normal(0.0, 1.0))
    np.testing.assert_allclose(res["kl"], expected.mean(0).numpy(), rtol=1e-5)
    assert res["total"] == pytest.approx(float(expected.sum(-1).mean()), rel=1e-5)
    assert res["num_collapsed"] == 0


def test_amortization_gap_zero_for_exact_encoder_and_closed_for_bad_one(conj, local_data):
    good = amortization_gap(
        conj.local_model, local_data, conj.local_encoder(), num_points=8, steps=100, eval_particles=500
    )
    assert abs(good["amortization_gap"]) < 0.02  # nothing to gain: q is the posterior already
    assert abs(good["approximation_gap"]) < 5e-3
    bad = amortization_gap(
        conj.local_model,
        local_data,
        conj.local_encoder(shift=1.0, scale_factor=2.0),
        num_points=8,
        steps=300,
        lr=0.05,
        eval_particles=500,
    )
    # KL(bad q || posterior) per point in closed form is the encoder's gap to log p(x)
    _, scale = conj.local_posterior(local_data[:1])
    kl = float(torch.distributions.kl_divergence(dist.Normal(1.0, 2 * scale), dist.Normal(0.0, scale)).sum())
    assert bad["log_likelihood"] - bad["elbo_encoder"] == pytest.approx(kl, rel=0.1)
    # the per-point optimizer recovers (almost) all of it: the Gaussian family contains the posterior
    assert bad["amortization_gap"] > 0.9 * kl
    assert bad["approximation_gap"] < 0.1


def _beta_pair(vae: VAE, beta: float):
    """Model/guide of ``vae`` with the KL term weighted by ``beta`` (poutine.scale on z in both)."""

    def model(x):
        pyro.module("vae", vae)
        with data_plate(x):
            with poutine.scale(scale=beta):
                z = pyro.sample("z", vae.prior())
            pyro.sample("x", vae.likelihood_dist(z), obs=x)

    def guide(x):
        pyro.module("vae", vae)
        with data_plate(x), poutine.scale(scale=beta):
            loc, scale = vae.encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return model, guide


def test_strong_kl_weight_collapses_units_and_normal_vae_does_not():
    data = load_data("digits", binarize=None, seed=0)
    result = {}
    for beta in (1.0, 10.0):
        pyro.set_rng_seed(0)
        vae = VAE(64, latent_dim=4, hidden=[64], likelihood="gaussian", gaussian_scale=0.2)
        vae.init_output_bias(data.train.mean(0))
        model, guide = _beta_pair(vae, beta)
        fit(model, data.train, guide=guide, steps=300, lr=3e-3, progress=False, seed=0)
        result[beta] = (active_units(vae, data.test), kl_per_dim(vae, data.test))
    normal_au, normal_kl = result[1.0]
    strong_au, strong_kl = result[10.0]
    assert normal_au["num_active"] == 4
    assert strong_au["num_active"] == 0
    assert (strong_au["activity"] < 0.01).all()
    assert strong_kl["total"] < 0.2 * normal_kl["total"]


def test_active_units_counts_dead_dimensions_of_a_fixed_encoder(conj, local_data):
    def guide(x):  # dims 0 and 2 follow the data, dim 1 ignores it (dead)
        loc, scale = conj.local_posterior(x)
        loc = loc.clone()
        loc[:, 1] = 0.0
        with data_plate(x):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    res = active_units(conj.local_model, local_data, guide)
    expected = (local_data / (1 + conj.local_noise**2)).var(0, unbiased=False).numpy()
    expected[1] = 0.0
    np.testing.assert_allclose(res["activity"], expected, rtol=1e-5, atol=1e-12)
    assert res["active"].tolist() == [True, False, True]


def test_khat_verdicts_and_bad_input():
    assert khat_verdict(0.3).startswith("good")
    assert khat_verdict(0.6).startswith("usable")
    assert khat_verdict(0.8).startswith("poor")
    assert khat_verdict(1.3).startswith("very poor")
    with pytest.raises(ValueError, match="at least 20"):
        psis_khat(torch.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        psis_khat(torch.full((100,), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        psis_khat(np.zeros((100, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        importance_gap(lambda x: None, torch.tensor([[float("nan")]]), guide=lambda x: None)
