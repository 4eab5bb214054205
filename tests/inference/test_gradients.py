"""gradient_moments against closed-form variances; the recorder leaves training unchanged."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

from pyro_gen.inference import fit
from pyro_gen.inference.gradients import GradientVarianceRecorder, gradient_moments
from pyro_gen.models.base import data_plate
from pyro_gen.models.vae import VAE

X = torch.tensor([[0.5], [-1.0], [2.0]])
M0 = torch.tensor([[0.1], [0.2], [-0.3]])
S0 = torch.tensor([[0.8], [1.2], [0.5]])


def model(x):
    with data_plate(x):
        z = pyro.sample("z", dist.Normal(torch.zeros(1), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)


def guide(x):
    m = pyro.param("m", M0.clone())
    s = pyro.param("s", S0.clone(), constraint=constraints.positive)
    with data_plate(x) as idx:
        pyro.sample("z", dist.Normal(m[idx], s[idx]).to_event(1))


def test_reparam_variance_matches_the_closed_form():
    # Per draw, z = m + s eps: d(-ELBO)/dm = -(x - 2z), d(-ELBO)/dlog s = -((x - 2z) s eps + 1),
    # so Var_m = 4 s^2 and Var_logs = (x - 2m)^2 s^2 + 8 s^4 (per point; divided by N^2 here).
    guide(X)
    mom = gradient_moments(model, guide, "reparam", X, 500, groups="name")
    n = X.shape[0]
    var_m = (4 * S0**2).reshape(-1).double() / n**2
    var_s = ((X - 2 * M0) ** 2 * S0**2 + 8 * S0**4).reshape(-1).double() / n**2
    # the sample variance of 500 draws has relative standard error sqrt(2 / 499) ~ 6%
    assert torch.allclose(mom["m"].variance, var_m, rtol=0.25)
    assert torch.allclose(mom["s"].variance, var_s, rtol=0.25)
    assert mom["all"].total_variance == pytest.approx(float(var_m.sum() + var_s.sum()), rel=0.15)
    a = mom["all"]
    assert a.snr == pytest.approx(float(a.mean.norm()) / math.sqrt(a.total_variance))


def test_rng_is_restored_and_num_data_scales_like_fit():
    guide(X)
    before = torch.get_rng_state()
    m1 = gradient_moments(model, guide, "reparam", X, 10, per_point=False)["all"]
    assert torch.equal(torch.get_rng_state(), before)
    m2 = gradient_moments(model, guide, "reparam", X, 10, per_point=False, num_data=30)["all"]
    # same draws (same random state), every log-density scaled by N / B = 10
    assert torch.allclose(m2.mean, 10 * m1.mean, rtol=1e-5)
    m3 = gradient_moments(model, guide, "reparam", X, 10, num_data=30)["all"]
    m4 = gradient_moments(model, guide, "reparam", X, 10)["all"]
    assert torch.allclose(m3.mean, m4.mean, rtol=1e-5)  # per data point: the same
    with pytest.raises(ValueError, match="num_data"):
        gradient_moments(model, guide, "reparam", X, 10, num_data=2)


def test_groups_split_a_vae_into_encoder_and_decoder():
    vae = VAE(6, latent_dim=2, hidden=(5,))
    x = torch.rand(8, 6)
    mom = gradient_moments(vae, None, "reparam", x, 5)
    assert set(mom) == {"encoder", "decoder", "all"}
    n_enc = sum(p.numel() for p in vae.encoder.parameters())
    n_dec = sum(p.numel() for p in vae.decoder.parameters())
    assert (mom["encoder"].num_params, mom["decoder"].num_params) == (n_enc, n_dec)
    assert mom["all"].total_variance == pytest.approx(
        mom["encoder"].total_variance + mom["decoder"].total_variance
    )
    custom = gradient_moments(vae, None, "reparam", x, 5, groups={"first": ["encoder.net.0", "decoder.0"]})
    assert set(custom) == {"first", "all"}
    assert custom["first"].num_params == sum(
        p.numel() for p in list(vae.encoder.net[0].parameters()) + list(vae.decoder[0].parameters())
    )


def test_recorder_measures_during_fit_without_changing_the_run():
    data = torch.bernoulli(torch.rand(64, 6), generator=torch.Generator().manual_seed(0))

    def train(with_recorder):
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = VAE(6, latent_dim=2, hidden=(5,))
        rec = GradientVarianceRecorder(vae, "reparam", data[:16], num_draws=4, at_steps=[5, 10], num_data=64)
        fit(
            vae,
            data,
            steps=10,
            batch_size=16,
            seed=1,
            progress=False,
            callbacks=[rec] if with_recorder else [],
        )
        return vae, rec

    a, rec = train(True)
    b, _ = train(False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert [r["step"] for r in rec.rows] == [5, 10]
    assert rec.rows[0]["encoder"]["total_variance"] > 0
    json.dumps(rec.rows)  # rows are plain JSON
    assert rec.seconds == pytest.approx(sum(r["seconds"] for r in rec.rows))


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="num_draws"):
        gradient_moments(model, guide, "reparam", X, 1)
    with pytest.raises(ValueError, match="data"):
        gradient_moments(model, guide, "reparam", None, 10)
    with pytest.raises(ValueError, match="groups"):
        gradient_moments(model, guide, "reparam", X, 10, groups=3)
    with pytest.raises(ValueError, match="at_steps"):
        GradientVarianceRecorder(model, "reparam", X)
