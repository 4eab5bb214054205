"""Conversion to InferenceData: groups, dims, shapes and values for guides, runs and encoders."""

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_gen.diagnostics import load_inference_data, save_inference_data, to_inference_data
from pyro_gen.inference import FitResult, fit
from pyro_gen.models.vae import VAE


def test_svi_runs_become_chains_with_right_groups_dims_and_shapes(conj, normal_data):
    runs = []
    for seed in (0, 1):
        runs.append(
            fit(
                conj.normal_model,
                normal_data,
                guide=conj.NormalGuide(),
                steps=400,
                lr=0.05,
                batch_size=25,
                seed=seed,
                progress=False,
            )
        )
    # the two runs start from different seeds but own their parameters
    assert runs[0].guide is not runs[1].guide
    idata = to_inference_data(runs, normal_data, num_samples=300, seed=0)
    n = normal_data.shape[0]
    assert set(idata.groups()) == {
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "observed_data",
        "sample_stats",
    }
    assert idata.posterior["mu"].dims == ("chain", "draw")
    assert idata.posterior["mu"].shape == (2, 300)
    assert idata.posterior_predictive["x"].dims == ("chain", "draw", "data")
    assert idata.posterior_predictive["x"].shape == (2, 300, n)
    assert idata.log_likelihood["x"].shape == (2, 300, n)
    assert idata.observed_data["x"].dims == ("data",)
    np.testing.assert_allclose(idata.observed_data["x"].values, normal_data[:, 0].numpy())
    assert idata.sample_stats["log_weight"].dims == ("chain", "draw")
    mean, sd = conj.exact_posterior(normal_data)
    for c, run in enumerate(runs):  # chain c holds draws of run c's guide
        loc, scale = run.guide.loc.item(), run.guide.log_scale.exp().item()
        assert abs(loc - mean) < 0.2 and abs(scale - sd) < 0.3 * sd  # SVI found the posterior
        assert abs(float(idata.posterior["mu"][c].mean()) - loc) < 4 * scale / np.sqrt(300)
        assert abs(float(idata.posterior["mu"][c].std()) - scale) < 0.15 * scale


def test_log_likelihood_and_weights_match_hand_computation(conj, normal_data):
    mean, sd = conj.exact_posterior(normal_data)
    idata = to_inference_data(
        conj.normal_model, normal_data, guide=conj.fixed_guide(mean, sd), num_samples=200, num_chains=2
    )
    mu = torch.as_tensor(idata.posterior["mu"].values)
    x = normal_data[:, 0]
    ll = dist.Normal(mu[..., None], conj.noise).log_prob(x).numpy()
    np.testing.assert_allclose(idata.log_likelihood["x"].values, ll, rtol=1e-5, atol=1e-5)
    lq = dist.Normal(mean, sd).log_prob(mu).numpy()
    lp = dist.Normal(0.0, 3.0).log_prob(mu).numpy() + ll.sum(-1)
    np.testing.assert_allclose(idata.sample_stats["lp"].values, lp, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(idata.sample_stats["log_weight"].values, lp - lq, rtol=1e-5, atol=1e-4)


def test_pointwise_log_likelihood_gives_the_same_loo_as_by_hand(conj, normal_data):
    mean, sd = conj.exact_posterior(normal_data)
    idata = to_inference_data(
        conj.normal_model,
        normal_data,
        guide=conj.fixed_guide(mean, sd),
        num_samples=500,
        num_chains=2,
        seed=3,
    )
    mu = idata.posterior["mu"].values
    by_hand = dist.Normal(torch.as_tensor(mu)[..., None], 1.0).log_prob(normal_data[:, 0]).numpy()
    ref = az.from_dict(posterior={"mu": mu}, log_likelihood={"x": by_hand})
    ours, theirs = az.loo(idata), az.loo(ref)
    assert float(ours.elpd_loo) == pytest.approx(float(theirs.elpd_loo), abs=1e-3)
    assert float(ours.p_loo) == pytest.approx(float(theirs.p_loo), abs=1e-3)
    # and it is the right number: elpd_loo close to the sum of exact LOO predictive densities
    x = normal_data[:, 0].double()
    exact = 0.0
    for i in range(len(x)):
        rest = torch.cat([x[:i], x[i + 1 :]])
        m, s = conj.exact_posterior(rest[:, None])
        exact += float(dist.Normal(m, (s**2 + 1.0) ** 0.5).log_prob(x[i]))
    assert float(ours.elpd_loo) == pytest.approx(exact, abs=0.1)


def test_amortized_encoder_gets_a_data_dimension(conj):
    vae = VAE(12, latent_dim=3, hidden=[8])
    x = torch.rand(7, 12)
    result = fit(vae, x, steps=2, batch_size=7, progress=False)
    # a FitResult, the model object and a (model, guide) pair convert alike
    same = [
        to_inference_data(src, x, num_samples=40, num_chains=2, seed=5)
        for src in (result, vae, (vae.model, vae.guide))
    ]
    for other in same[1:]:
        np.testing.assert_array_equal(other.posterior["z"].values, same[0].posterior["z"].values)
    idata = same[0]
    assert idata.posterior["z"].dims == ("chain", "draw", "data", "z_dim_0")
    assert idata.posterior["z"].shape == (2, 40, 7, 3)
    assert idata.posterior_predictive["x"].dims == ("chain", "draw", "data", "x_dim_0")
    assert idata.log_likelihood["x"].dims == ("chain", "draw", "data")
    assert idata.sample_stats["log_weight"].dims == ("chain", "draw", "data")
    assert idata.observed_data["x"].shape == (7, 12)
    # log_likelihood is log p(x_n | z_n) of the stored draw, summed over pixels
    z = torch.as_tensor(idata.posterior["z"].values)
    with torch.no_grad():
        ll = vae.likelihood_dist(z).log_prob(x).numpy()
    np.testing.assert_allclose(idata.log_likelihood["x"].values, ll, rtol=1e-5, atol=1e-4)
    # the encoder's per-point means are recovered from the draws
    loc, _ = vae.encode(x)
    np.testing.assert_allclose(z.mean((0, 1)).numpy(), loc.numpy(), atol=0.25)


def test_netcdf_round_trip_preserves_every_group(conj, local_data, tmp_path):
    idata = to_inference_data(
        conj.local_model, local_data, guide=conj.local_encoder(), num_samples=30, num_chains=2
    )
    path = save_inference_data(idata, tmp_path / "sub" / "post.nc")
    back = load_inference_data(path)
    assert set(back.groups()) == set(idata.groups())
    for group in idata.groups():
        a, b = idata[group], back[group]
        assert set(a.data_vars) == set(b.data_vars)
        for name in a.data_vars:
            assert a[name].dims == b[name].dims
            np.testing.assert_array_equal(a[name].values, b[name].values)


def test_bad_inputs_raise_value_errors(conj, normal_data, tmp_path):
    mean, sd = conj.exact_posterior(normal_data)
    with pytest.raises(ValueError, match="num_samples"):
        to_inference_data(conj.normal_model, normal_data, guide=conj.fixed_guide(mean, sd), num_samples=0)

    def empty_guide(x):
        pass

    with pytest.raises(ValueError, match="latent sites"):
        to_inference_data(conj.normal_model, normal_data, guide=empty_guide, num_samples=5)
    with pytest.raises(ValueError, match="runs is empty"):
        to_inference_data([], normal_data)
    with pytest.raises(FileNotFoundError):
        load_inference_data(tmp_path / "missing.nc")
    em_like = FitResult(
        model=object(), history=[], steps=1, epochs=1.0, seconds=0.0, estimator="em", kind="em"
    )
    with pytest.raises(ValueError, match="without a guide"):
        to_inference_data(em_like, normal_data)
    no_draws = FitResult(
        model=object(), history=[], steps=1, epochs=1.0, seconds=0.0, estimator="nuts", kind="nuts"
    )
    with pytest.raises(ValueError, match="posterior samples"):
        to_inference_data(no_draws, normal_data)


def test_global_sites_inside_other_plates_keep_their_plate_names():
    def model(x):
        tau = pyro.sample("tau", dist.HalfNormal(1.0))
        with pyro.plate("groups", 3, dim=-2):
            theta = pyro.sample("theta", dist.Normal(0.0, tau))
            with pyro.plate("data", x.shape[1], dim=-1):
                pyro.sample("x", dist.Normal(theta, 1.0), obs=x)

    def guide(x):
        pyro.sample("tau", dist.LogNormal(0.0, 0.3))
        with pyro.plate("groups", 3, dim=-2):
            pyro.sample("theta", dist.Normal(torch.zeros(3, 1), 1.0))

    x = torch.randn(3, 5)
    idata = to_inference_data(model, x, guide=guide, num_samples=20)
    assert idata.posterior["tau"].dims == ("chain", "draw")
    assert idata.posterior["theta"].dims == ("chain", "draw", "groups")
    assert idata.log_likelihood["x"].dims == ("chain", "draw", "groups", "data")
    assert idata.observed_data["x"].dims == ("groups", "data")
