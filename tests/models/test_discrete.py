"""Binary-latent VAE: enumeration is exact, score-function gradients are unbiased for it."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

from pyro_gen.evaluation import importance_log_likelihood
from pyro_gen.inference import fit
from pyro_gen.inference.gradients import gradient_moments
from pyro_gen.models.discrete import DiscreteVAE


def _toy(n=64, seed=0):
    """Binary 6-pixel data generated from 3 hidden bits (each bit switches two pixels on)."""
    g = torch.Generator().manual_seed(seed)
    bits = torch.bernoulli(torch.full((n, 3), 0.5), generator=g)
    probs = 0.05 + 0.9 * bits.repeat_interleave(2, dim=1)
    return torch.bernoulli(probs, generator=g)


def _small(num_latents=3):
    return DiscreteVAE(6, num_latents=num_latents, hidden=(8,))


def test_enumerated_elbo_equals_the_exact_sum_over_codes():
    vae = _small()
    x = _toy(16)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(vae.model, vae.guide_enumerated, x)
    assert -loss == pytest.approx(float(vae.exact_elbo(x).sum()), rel=1e-5)


def test_exact_log_likelihood_matches_model_enumeration_and_bounds_the_elbo():
    vae = _small()
    x = _toy(16)

    def empty_guide(x):
        pass

    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(config_enumerate(vae.model), empty_guide, x)
    ll = vae.exact_log_likelihood(x)
    assert -loss == pytest.approx(float(ll.sum()), rel=1e-5)
    assert torch.all(vae.exact_elbo(x) <= ll + 1e-5)
    est = importance_log_likelihood(vae, x, k=2000)
    assert est["log_likelihood"] == pytest.approx(float(ll.mean()), abs=0.02)


@pytest.mark.parametrize("estimator", ["score", "score-baseline", "score-loo:4"])
def test_score_function_gradients_are_unbiased_for_the_enumerated_gradient(estimator):
    vae = _small()
    x = _toy(8)
    params = list(vae.parameters())
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(vae.model, vae.guide_enumerated, x)
    exact = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).double() / x.shape[0]
    mom = gradient_moments(vae, vae.guide, estimator, x, 200)["all"]
    se = (mom.variance / mom.num_draws).sqrt()
    noisy = se > 0  # dead ReLU units have exactly zero gradient under every estimator
    z = ((mom.mean - exact) / se)[noisy].abs()
    assert z.max() < 5.0, float(z.max())
    assert torch.allclose(mom.mean[~noisy], exact[~noisy], atol=1e-7)


def test_relaxed_guide_uses_the_exact_bernoulli_kl():
    q = dist.RelaxedBernoulliStraightThrough(torch.tensor(0.5), probs=torch.tensor([0.2, 0.9]))
    p = dist.Bernoulli(torch.tensor([0.5, 0.3]))
    a, b = torch.tensor([0.2, 0.9]), torch.tensor([0.5, 0.3])
    expected = a * torch.log(a / b) + (1 - a) * torch.log((1 - a) / (1 - b))
    assert torch.allclose(torch.distributions.kl_divergence(q, p), expected, atol=1e-6)
    vae = _small()
    tr = pyro.poutine.trace(vae.guide_relaxed).get_trace(_toy(4))
    z = tr.nodes["z_0"]["value"]
    assert set(z.unique().tolist()) <= {0.0, 1.0} and z.requires_grad  # hard forward, soft backward


@pytest.mark.parametrize(
    "estimator,guide",
    [
        ("enum", "guide_enumerated"),
        ("score-loo:4", "guide"),
        ("analytic-kl", "guide_relaxed"),
        ("vimco:4", "guide"),
        ("rws:4", "guide"),
    ],
)
def test_each_training_method_improves_the_exact_log_likelihood(estimator, guide):
    pyro.set_rng_seed(1)
    vae = _small()
    x = _toy(128)
    vae.init_output_bias(x.mean(0))
    before = float(vae.exact_log_likelihood(x).mean())
    fit(
        vae,
        x,
        guide=getattr(vae, guide),
        estimator=estimator,
        steps=200,
        lr=0.02,
        batch_size=64,
        progress=False,
    )
    after = float(vae.exact_log_likelihood(x).mean())
    # no model beats the empirical distribution of the training rows: log p(x) <= -H(empirical)
    _, counts = torch.unique(x, dim=0, return_counts=True)
    freq = counts.double() / x.shape[0]
    assert after > before + 0.15, (before, after)
    assert after <= float((freq * freq.log()).sum()) + 1e-4, after


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="temperature"):
        DiscreteVAE(6, temperature=0.0)
    with pytest.raises(ValueError, match="prior_prob"):
        DiscreteVAE(6, prior_prob=1.0)
    with pytest.raises(ValueError, match="num_latents <= 16"):
        DiscreteVAE(6, num_latents=20).exact_elbo(_toy(2))
    with pytest.raises(ValueError, match="shape"):
        _small().check_data(torch.zeros(3, 5))
