"""MIWAE, PIWAE, CIWAE, Renyi, VIMCO and RWS against closed forms and exact enumeration.

Continuous bounds: a linear-Gaussian VAE (closed-form log p(x), ELBO and posterior) and the
conjugate model of ``test_estimators`` (z ~ N(0, 1), x | z ~ N(z, 1), posterior N(x/2, 1/2)).
Discrete estimators: a binary-latent VAE small enough to sum over every K-tuple of codes,
which gives the exact expected bound and the exact expectation of each estimator.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

from pyro_gen.inference import fit, make_estimator
from pyro_gen.inference.bounds import (
    CIWAE_ELBO,
    DEFAULTS,
    MIWAE_ELBO,
    PIWAE_ELBO,
    VIMCO_ELBO,
    Renyi_ELBO,
    parse_bound_spec,
)
from pyro_gen.inference.catalog import BUILTIN_ESTIMATORS
from pyro_gen.inference.estimators import IWAE_ELBO, estimator_names
from pyro_gen.inference.gradients import gradient_moments
from pyro_gen.models import VAE
from pyro_gen.models.base import data_plate, minibatch
from pyro_gen.models.discrete import DiscreteVAE
from tests.linear_gaussian import closed_form_elbo, exact_log_marginal, linear_gaussian_vae

BOUNDS = ("miwae", "piwae", "ciwae", "renyi", "vimco", "rws")


def _data(n=6, d=4, seed=1):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * 1.5


def _value(spec_or_elbo, vae, x, seed):
    """Return the bound (nats, summed over rows) of one draw under ``seed``."""
    elbo = make_estimator(spec_or_elbo)
    elbo.loss(vae.model, vae.guide, x)  # the first call probes the plates (on its own stream)
    pyro.set_rng_seed(seed)
    return -elbo.loss(vae.model, vae.guide, x)


def _elbo_average(vae, x, m, seed):
    """The ELBO averaged over ``m`` samples per row by Pyro's Trace_ELBO (nats, summed over rows)."""
    elbo = pyro.infer.Trace_ELBO(num_particles=m, vectorize_particles=m > 1, max_plate_nesting=1)
    pyro.set_rng_seed(seed)
    return -elbo.loss(vae.model, vae.guide, x)


# ---------------------------------------------------------------- exact posterior: log p(x)


@pytest.mark.parametrize(
    "spec", ["iwae:4", "miwae:3x4", "piwae:3x4", "ciwae:8:0.3", "renyi:5:0.5", "renyi:5:-1", "renyi:5:1"]
)
def test_every_bound_equals_log_px_with_the_exact_posterior_as_guide(spec):
    # one latent dimension: the mean-field guide of linear_gaussian_vae is the exact posterior,
    # so every log-weight equals log p(x) and every bound is log p(x) whatever the draws
    vae, W, b, s = linear_gaussian_vae(input_dim=3, latent_dim=1)
    x = _data(d=3)
    exact = float(exact_log_marginal(x, W, b, s).sum())
    for seed in (0, 1):
        assert _value(spec, vae, x, seed) == pytest.approx(exact, abs=2e-4)


# ---------------------------------------------------------------- identities, draw for draw


def test_miwae_reduces_to_iwae_at_m1_and_to_the_averaged_elbo_at_k1():
    vae, *_ = linear_gaussian_vae(latent_dim=2)
    x = _data()
    for seed in (0, 3):
        assert _value("miwae:1x5", vae, x, seed) == pytest.approx(_value("iwae:5", vae, x, seed), abs=1e-4)
        assert _value("miwae:6x1", vae, x, seed) == pytest.approx(_elbo_average(vae, x, 6, seed), abs=1e-4)
    # not trivially equal: M x K = 4 x 4 lies strictly between the two on the same draws
    pyro.set_rng_seed(5)
    log_p, log_q, *_ = MIWAE_ELBO(4, 4)._log_weights(vae.model, vae.guide, (x,), {})
    lw = log_p - log_q
    iwae16 = IWAE_ELBO._bound(lw)
    miwae = MIWAE_ELBO(4, 4)._bound(lw)
    assert torch.all(lw.mean(0) < miwae - 1e-4) and torch.all(miwae < iwae16 - 1e-4)


def test_ciwae_is_the_elbo_at_beta1_iwae_at_beta0_and_linear_between():
    vae, *_ = linear_gaussian_vae(latent_dim=2)
    x = _data()
    seed = 2
    elbo = _elbo_average(vae, x, 8, seed)
    iwae = _value("iwae:8", vae, x, seed)
    assert _value("ciwae:8:1", vae, x, seed) == pytest.approx(elbo, abs=1e-4)
    assert _value("ciwae:8:0", vae, x, seed) == pytest.approx(iwae, abs=1e-4)
    assert _value("ciwae:8:0.25", vae, x, seed) == pytest.approx(0.25 * elbo + 0.75 * iwae, abs=1e-4)
    assert iwae > elbo + 0.01


def test_renyi_is_iwae_at_alpha0_the_elbo_at_alpha1_and_in_the_limit():
    vae, *_ = linear_gaussian_vae(latent_dim=2)
    x = _data().double()
    vae = vae.double()
    seed = 4
    elbo = _elbo_average(vae, x, 6, seed)
    iwae = _value("iwae:6", vae, x, seed)
    assert _value("renyi:6:0", vae, x, seed) == pytest.approx(iwae, abs=1e-8)
    assert _value("renyi:6:1", vae, x, seed) == pytest.approx(elbo, abs=1e-8)
    # 1/(1-a) log mean w^(1-a) = mean log w + (1-a)/2 var(log w) + O((1-a)^2)
    near = [_value(f"renyi:6:{1 - eps}", vae, x, seed) for eps in (1e-2, 1e-3, 1e-4)]
    gaps = [v - elbo for v in near]
    assert all(g > 0 for g in gaps) and gaps[1] == pytest.approx(gaps[0] / 10, rel=0.05)
    assert gaps[2] == pytest.approx(gaps[1] / 10, rel=0.05)
    # one sample: the ELBO, whatever alpha; the bound falls as alpha grows (same draws)
    assert _value("renyi:1:0.3", vae, x, seed) == pytest.approx(_elbo_average(vae, x, 1, seed), abs=1e-8)
    values = [_value(f"renyi:6:{a}", vae, x, seed) for a in (-1.0, 0.0, 0.5, 2.0)]
    assert all(hi > lo for hi, lo in zip(values, values[1:])), values


def test_renyi_matches_pyro_renyi_elbo_without_subsampling_but_not_under_minibatches():
    vae, *_ = linear_gaussian_vae(latent_dim=2)
    x = _data()
    ours, theirs = (
        Renyi_ELBO(5, alpha=0.5),
        pyro.infer.RenyiELBO(alpha=0.5, num_particles=5, vectorize_particles=True, max_plate_nesting=1),
    )
    ours.loss(vae.model, vae.guide, x)
    params = list(vae.parameters())

    def value_and_grad(fn):
        pyro.set_rng_seed(7)
        for p in params:
            p.grad = None
        value = fn()
        return value, [p.grad.clone() for p in params]

    def registered(*args):  # Pyro's loss_and_grads backpropagates only when a param site is traced
        pyro.module("vae", vae)
        return vae.model(*args)

    a, ga = value_and_grad(lambda: ours.loss_and_grads(vae.model, vae.guide, x))
    b, gb = value_and_grad(lambda: theirs.loss_and_grads(registered, vae.guide, x))
    assert a == pytest.approx(b, rel=1e-5)
    for u, v in zip(ga, gb):
        assert torch.allclose(u, v, atol=1e-4)
    # as a minibatch of 60 points, ours is the per-point bound scaled by N / B; Pyro's is not
    with minibatch(60, torch.arange(6)):
        pyro.set_rng_seed(7)
        scaled = ours.loss(vae.model, vae.guide, x)
        pyro.set_rng_seed(7)
        pyros = theirs.loss(vae.model, vae.guide, x)
    assert scaled == pytest.approx(10 * a, rel=1e-5)
    assert abs(pyros - scaled) > 1.0


# ---------------------------------------------------------------- expectations: closed forms


def test_expected_single_inner_sample_bounds_equal_the_closed_form_elbo():
    vae, W, b, s = linear_gaussian_vae(latent_dim=2)
    x = _data()
    exact = float(closed_form_elbo(vae, x, W, b, s).sum())
    for spec in ("miwae:4x1", "ciwae:4:1", "renyi:1:0.5"):
        elbo = make_estimator(spec)
        with torch.no_grad():
            vals = torch.tensor([-elbo.loss(vae.model, vae.guide, x) for _ in range(300)])
        se = float(vals.std()) / math.sqrt(len(vals))
        assert abs(float(vals.mean()) - exact) < 4 * se + 1e-5, (spec, float(vals.mean()), exact)


# ---------------------------------------------------------------- PIWAE's two gradients


def test_piwae_gives_the_model_the_iwae_gradient_and_the_guide_the_miwae_gradient():
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=(5,))
    x = torch.bernoulli(torch.full((5, 6), 0.4), generator=torch.Generator().manual_seed(0))
    enc = [p for n, p in vae.named_parameters() if n.startswith("encoder")]
    dec = [p for n, p in vae.named_parameters() if n.startswith("decoder")]

    def grads(elbo):
        elbo.loss(vae.model, vae.guide, x)
        pyro.set_rng_seed(11)
        loss = elbo.differentiable_loss(vae.model, vae.guide, x)
        return float(loss.detach()), torch.autograd.grad(loss, enc + dec)

    piwae_loss, piwae = grads(PIWAE_ELBO(3, 4))
    iwae_loss, iwae = grads(IWAE_ELBO(12))
    _, miwae = grads(MIWAE_ELBO(3, 4))
    assert piwae_loss == pytest.approx(iwae_loss, rel=1e-6)  # its value: the model's bound
    for got, want in zip(piwae[len(enc) :], iwae[len(enc) :]):
        assert torch.allclose(got, want, atol=1e-5)
    for got, want in zip(piwae[: len(enc)], miwae[: len(enc)]):
        assert torch.allclose(got, want, atol=1e-5)
    # and the two parts differ: the test could fail
    assert not torch.allclose(miwae[0], iwae[0], atol=1e-3)
    assert not torch.allclose(miwae[-1], iwae[-1], atol=1e-3)


# ---------------------------------------------------------------- through fit


def _conjugate():
    x = torch.tensor([[0.5], [-1.0], [2.0]])

    def model(x):
        with data_plate(x):
            z = pyro.sample("z", dist.Normal(torch.zeros(1), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        m = pyro.param("m", torch.tensor([[0.1], [0.2], [-0.3]]))
        s = pyro.param("s", torch.tensor([[0.8], [1.2], [0.5]]), constraint=constraints.positive)
        with data_plate(x) as idx:
            pyro.sample("z", dist.Normal(m[idx], s[idx]).to_event(1))

    return x, model, guide


def _kl_to_posterior(x):
    """KL(q || p(z | x)) summed over the rows (nats), the posterior being N(x / 2, 1 / 2)."""
    m, s = pyro.param("m").detach(), pyro.param("s").detach()
    return float((torch.log(math.sqrt(0.5) / s) + (s**2 + (m - x / 2) ** 2) - 0.5).sum())


@pytest.mark.parametrize("spec", ["miwae:2x3", "piwae:2x3", "ciwae:6:0.5", "renyi:4:0.5"])
def test_each_bound_trains_through_fit_towards_the_exact_posterior(spec):
    # each bound is at most log p(x), with equality at the exact posterior, so maximizing it
    # drives KL(q || posterior) down (from 2.73 nats; 0.01-0.06 measured after 300 steps)
    x, model, guide = _conjugate()
    guide(x)
    before = _kl_to_posterior(x)
    fit(
        model,
        x,
        guide=guide,
        estimator=spec,
        steps=300,
        lr=0.05,
        lr_schedule="cosine",
        batch_size=3,
        progress=False,
    )
    assert _kl_to_posterior(x) < 0.05 * before, (spec, _kl_to_posterior(x))


# ---------------------------------------------------------------- discrete: exact enumeration


def _binary(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    bits = torch.bernoulli(torch.full((n, 2), 0.5), generator=g)
    return torch.bernoulli(0.1 + 0.8 * bits.repeat_interleave(2, dim=1), generator=g)


def _dvae():
    torch.manual_seed(3)
    return DiscreteVAE(4, num_latents=2, hidden=(5,), activation="tanh")


def _flat(grads):
    return torch.cat([g.reshape(-1) for g in grads]).double()


def _z(mom, exact):
    se = (mom.variance / mom.num_draws).sqrt()
    return ((mom.mean - exact) / se).abs()


def test_exact_iwae_bound_is_the_elbo_at_k1_and_rises_to_log_px():
    vae, x = _dvae(), _binary()
    with torch.no_grad():
        assert torch.allclose(vae.exact_iwae_bound(x, 1), vae.exact_elbo(x), atol=1e-5)
        bounds = [vae.exact_iwae_bound(x, k) for k in (1, 2, 4)]
        ll = vae.exact_log_likelihood(x)
    assert torch.all(bounds[0] < bounds[1]) and torch.all(bounds[1] < bounds[2]) and torch.all(bounds[2] < ll)
    # the loss of vimco:2 and rws:2 (the negative 2-sample bound) estimates it without bias
    for spec in ("vimco:2", "rws:2"):
        est = make_estimator(spec)
        with torch.no_grad():
            vals = torch.tensor([-est.loss(vae.model, vae.guide, x) for _ in range(300)])
        se = float(vals.std()) / math.sqrt(len(vals))
        assert abs(float(vals.mean()) - float(bounds[1].sum())) < 4 * se, spec
    with pytest.raises(ValueError, match="tuples"):
        DiscreteVAE(4, num_latents=9).exact_iwae_bound(x, 3)


def test_vimco_is_unbiased_for_the_exact_iwae_gradient_and_beats_the_plain_score_function():
    vae, x = _dvae(), _binary()
    k = 3
    params = list(vae.parameters())
    exact = _flat(torch.autograd.grad(-vae.exact_iwae_bound(x, k).sum(), params)) / x.shape[0]
    vimco = gradient_moments(vae, vae.guide, f"vimco:{k}", x, 300)
    z = _z(vimco["all"], exact)
    assert z.max() < 4.5, float(z.max())

    class NoBaseline(VIMCO_ELBO):
        @staticmethod
        def learning_signals(log_w):
            return (torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])).expand_as(log_w)

    plain = gradient_moments(vae, vae.guide, NoBaseline(k), x, 300)
    assert _z(plain["all"], exact).max() < 4.5  # also unbiased: the signal is what changed
    assert vimco["encoder"].total_variance < 0.5 * plain["encoder"].total_variance
    # the model's gradient does not involve the signals
    assert vimco["decoder"].total_variance == pytest.approx(plain["decoder"].total_variance, rel=1e-4)


def test_rws_wake_phases_are_unbiased_for_their_exact_expectations():
    vae, x = _dvae(), _binary()
    k = 3
    enc = [p for n, p in vae.named_parameters() if n.startswith("encoder")]
    dec = [p for n, p in vae.named_parameters() if n.startswith("decoder")]
    # wake-theta: the model's gradient of the exact expected K-sample bound
    theta = _flat(torch.autograd.grad(-vae.exact_iwae_bound(x, k).sum(), dec)) / x.shape[0]
    # wake-phi: E[sum_k w~_k grad log q(z_k)] summed over every K-tuple of codes
    log_joint, log_q = vae.code_log_densities(x)
    codes = log_q.shape[0]
    tuples = torch.cartesian_prod(*[torch.arange(codes)] * k)
    lw = (log_joint - log_q).detach()[tuples]  # (T, K, N)
    w = torch.softmax(lw, dim=1)
    prob = log_q.detach()[tuples].sum(1).exp()  # (T, N)
    wake_phi = (prob.unsqueeze(1) * w * log_q[tuples]).sum()
    phi = _flat(torch.autograd.grad(-wake_phi, enc)) / x.shape[0]
    # it is not the bound's guide gradient: the test tells the two apart
    bound_phi = _flat(torch.autograd.grad(-vae.exact_iwae_bound(x, k).sum(), enc)) / x.shape[0]
    assert (phi - bound_phi).norm() > 0.3 * phi.norm()
    mom = gradient_moments(vae, vae.guide, f"rws:{k}", x, 300)
    assert _z(mom["decoder"], theta).max() < 4.5
    assert _z(mom["encoder"], phi).max() < 4.5
    # ... and the estimates tell them apart too: against the bound's gradient the mean squared
    # z-score is far above its value of about 1 under unbiasedness
    assert float((_z(mom["encoder"], bound_phi) ** 2).mean()) > 4


def test_rws_sleep_phase_is_unbiased_for_the_exact_expected_dream_gradient():
    vae, x = _dvae(), _binary()
    enc = [p for n, p in vae.named_parameters() if n.startswith("encoder")]
    # E_{p(z, x)}[grad log q(z | x)], summed over the 4 codes and all 16 binary images
    images = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * 4)
    log_joint, log_q = vae.code_log_densities(images)
    sleep = _flat(torch.autograd.grad(-(log_joint.detach().exp() * log_q).sum(), enc))
    assert float(log_joint.detach().exp().sum()) == pytest.approx(
        1.0, abs=1e-5
    )  # the enumeration is complete
    mom = gradient_moments(vae, vae.guide, "rws:3:0", x, 300)  # insomnia 0: the guide on dreams only
    assert _z(mom["encoder"], sleep).max() < 4.5
    # insomnia 0.5: the mean of the two phases
    half = gradient_moments(vae, vae.guide, "rws:3:0.5", x, 300)
    wake = gradient_moments(vae, vae.guide, "rws:3", x, 300)
    mixed = 0.5 * (mom["encoder"].mean + wake["encoder"].mean)
    se = (
        (half["encoder"].variance + 0.25 * (mom["encoder"].variance + wake["encoder"].variance)) / 400
    ).sqrt()
    assert ((half["encoder"].mean - mixed) / se).abs().max() < 4.5
    with pytest.raises(ValueError, match="insomnia"):
        make_estimator("rws:3:1.5")


# ---------------------------------------------------------------- names and bad input


def test_every_bound_is_registered_listed_and_parses(capsys):
    from pyro_gen.cli import main

    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    for name in BOUNDS:
        assert name in estimator_names() and name in BUILTIN_ESTIMATORS
        assert f"  {name} " in listed
        assert type(make_estimator(name)).__name__.lower().startswith(name)
    assert set(estimator_names()) == set(BUILTIN_ESTIMATORS)
    m = make_estimator("miwae:3x5")
    assert (m.outer, m.inner, m.num_particles) == (3, 5, 15)
    assert make_estimator("miwae").num_particles == 64 and DEFAULTS["miwae"] == {"outer": 8, "inner": 8}
    c = make_estimator("ciwae:16:0.05")
    assert (c.num_particles, c.beta) == (16, 0.05)
    assert make_estimator("ciwae:16").beta == 0.5
    r = make_estimator("renyi:7:-0.5")
    assert (r.num_particles, r.alpha) == (7, -0.5)
    assert make_estimator("vimco:4").num_particles == 4 and make_estimator("rws").num_particles == 5
    assert make_estimator("vimco", num_particles=7).num_particles == 7  # a bare name takes fit's K
    assert parse_bound_spec("piwae", "2x9") == {"outer": 2, "inner": 9}
    assert isinstance(make_estimator("ciwae:4:0.5"), CIWAE_ELBO)


@pytest.mark.parametrize(
    "spec,match",
    [
        ("miwae:8", "miwae:MxK"),
        ("piwae:0x4", "M must be a positive integer"),
        ("ciwae:8:1.5", r"beta must be in \[0, 1\]"),
        ("ciwae:8:nan", "beta must be finite"),
        ("renyi:k:0.5", "K must be a positive integer"),
        ("renyi:4:half", "alpha must be a number"),
        ("vimco:1", "K >= 2"),
        ("vimco:3:0.5", "only the sample count"),
        ("rws:3:2", r"insomnia .* must be in \[0, 1\]"),
        ("iwae:x", "positive integer"),
    ],
)
def test_bad_specs_raise_one_clear_line(spec, match):
    with pytest.raises(ValueError, match=match) as err:
        make_estimator(spec)
    assert spec in str(err.value) and "\n" not in str(err.value)


def test_reparameterized_bounds_refuse_a_discrete_guide_and_global_latents():
    vae, x = _dvae(), _binary(4)
    for spec in ("miwae:2x2", "piwae:2x2", "ciwae:4", "renyi:4"):
        with pytest.raises(ValueError, match=f"{spec.split(':')[0]} needs reparameterizable guide sites"):
            make_estimator(spec).differentiable_loss(vae.model, vae.guide, x)
    # the discrete estimators take the same guide
    for spec in ("vimco:3", "rws:3"):
        assert torch.isfinite(make_estimator(spec).differentiable_loss(vae.model, vae.guide, x))
    # a relaxed (continuous) guide for Bernoulli latents gives no importance weight
    for spec in ("vimco:3", "rws:3", "iwae:3"):
        with pytest.raises(ValueError, match="site 'z_0' is continuous in the guide"):
            make_estimator(spec).differentiable_loss(vae.model, vae.guide_relaxed, x)
    # none of them detaches the guide's parameters, so a hierarchical guide q(z2 | z1) trains
    two = VAE(4, 2, hidden=(5,), lower_latents=(3,), between_hidden=(4,))
    first = next(two.encoder.parameters())
    for spec in BOUNDS:
        first.grad = None
        make_estimator(f"{spec}:2x2" if spec in ("miwae", "piwae") else f"{spec}:3").differentiable_loss(
            two.model, two.guide, x
        ).backward()
        assert first.grad is not None and torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0, (
            spec
        )

    def global_guide(x):
        pyro.sample("g", dist.Normal(pyro.param("g_loc", torch.zeros(())), 1.0))

    def global_model(x):
        g = pyro.sample("g", dist.Normal(0.0, 1.0))
        with data_plate(x):
            pyro.sample("x", dist.Normal(g.unsqueeze(-1), 1.0).to_event(1), obs=x)

    for spec in BOUNDS:
        with pytest.raises(ValueError, match="outside the 'data' plate"):
            make_estimator(spec).loss(global_model, global_guide, x)
