"""Learned priors: exact log-densities against direct computations, normalization, and the ELBOs."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyro_gen.models.priors import FlowPrior, MixturePrior, VampPrior, make_prior
from pyro_gen.models.vae import VAE


def _normal_log_pdf(z, loc, scale):
    return (-0.5 * ((z - loc) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_mixture_log_density_is_the_weighted_sum_of_its_gaussians():
    torch.manual_seed(0)
    prior = MixturePrior(3, num_components=4, seed=1)
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
        prior.raw_scales.normal_()
    z = torch.randn(7, 3) * 2
    weights = torch.softmax(prior.logits, 0)
    direct = torch.zeros(7)
    for k in range(4):
        direct += weights[k] * _normal_log_pdf(z, prior.locs[k], prior.scales()[k]).exp()
    d = prior.distribution()
    assert d.event_shape == (3,)
    assert torch.allclose(d.log_prob(z), direct.log(), atol=1e-5)


def test_vamp_prior_is_the_uniform_mixture_of_the_encoder_posteriors_at_the_pseudo_inputs():
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=(8,), prior="vamp", prior_components=5, vamp_data=torch.rand(30, 6))
    u = vae.prior_module.pseudo_inputs()
    assert u.shape == (5, 6) and (u >= 0).all() and (u <= 1).all()
    loc, scale = vae.encoder(u)
    z = torch.randn(9, 2)
    comps = torch.stack([_normal_log_pdf(z, loc[k], scale[k]) for k in range(5)], -1)
    direct = torch.logsumexp(comps, -1) - math.log(5)
    assert torch.allclose(vae.prior().log_prob(z), direct, atol=1e-5)
    # the prior moves with the encoder: its log-density has a gradient in the encoder's weights
    vae.prior().log_prob(z).sum().backward()
    assert vae.encoder.net[0].weight.grad.abs().sum() > 0
    assert vae.prior_module.raw_inputs.grad.abs().sum() > 0


def test_vamp_initializations():
    data = torch.rand(20, 4)
    near = VampPrior(4, 3, init="data", data=data, seed=0).pseudo_inputs()
    # each pseudo-input starts within the noise of one training point
    gaps = torch.cdist(near, data).min(1).values
    assert (gaps < 0.1).all()
    rand = VampPrior(4, 3, init="random", seed=0).pseudo_inputs()
    assert torch.allclose(rand.mean(), torch.tensor(0.05), atol=0.02)
    with pytest.raises(ValueError, match="needs training data"):
        VampPrior(4, 3, init="data", data=None)
    with pytest.raises(ValueError, match="--vamp-init"):
        VampPrior(4, 3, init="kmeans")


def test_flow_prior_log_density_is_the_change_of_variables():
    torch.manual_seed(0)
    prior = FlowPrior(2, transform="maf", depth=2, hidden=(16, 16), seed=0)
    with torch.no_grad():  # leave the identity start so the test sees a real transform
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    d = prior.distribution()
    z = d.sample((6,))
    # direct: invert the generative transforms one by one and add their log-Jacobians
    u, log_det = z, torch.zeros(6)
    for t in reversed(d.transforms):
        x = t.inv(u)
        log_det = log_det - t.log_abs_det_jacobian(x, u)
        u = x
    direct = _normal_log_pdf(u, torch.zeros(2), torch.ones(2)) + log_det
    prior.flow.clear_cache()
    assert torch.allclose(prior.distribution().log_prob(z), direct, atol=1e-4)


def test_flow_prior_normalizes_in_two_dimensions():
    torch.manual_seed(0)
    prior = FlowPrior(2, transform="maf", depth=2, hidden=(16, 16), seed=0)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    g = torch.linspace(-9, 9, 361)
    grid = torch.cartesian_prod(g, g)
    with torch.no_grad():
        density = prior.distribution().log_prob(grid).exp()
    mass = float(density.sum() * (g[1] - g[0]) ** 2)
    assert mass == pytest.approx(1.0, abs=0.01)


def test_flow_prior_starts_at_the_standard_normal():
    prior = FlowPrior(3, depth=3, seed=0)
    z = torch.randn(5, 3)
    assert torch.allclose(
        prior.distribution().log_prob(z), _normal_log_pdf(z, torch.zeros(3), torch.ones(3)), atol=1e-5
    )


def test_make_prior_refuses_unknown_kinds_and_bad_sizes():
    with pytest.raises(ValueError, match="--prior must be one of"):
        make_prior("laplace", 2)
    with pytest.raises(ValueError, match="--prior-components"):
        make_prior("mog", 2, num_components=0)
    with pytest.raises(ValueError, match="one stochastic layer"):
        VAE(6, 2, prior="vamp", lower_latents=(4,), vamp_data=torch.rand(5, 6))


@pytest.mark.parametrize("prior", ["mog", "vamp", "flow"])
def test_analytic_kl_falls_back_to_the_monte_carlo_term_for_learned_priors(prior):
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=(8,), prior=prior, vamp_data=torch.rand(10, 6))
    x = torch.bernoulli(torch.rand(5, 6))
    pyro.set_rng_seed(3)
    mean_field = TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(3)
    trace = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    # no closed-form KL: Pyro's mean-field ELBO uses log p(z) - log q(z) on the same draw
    assert torch.allclose(mean_field, trace, atol=1e-4)


def test_analytic_kl_stays_closed_form_for_the_normal_prior():
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=(8,))
    x = torch.bernoulli(torch.rand(5, 6))
    pyro.set_rng_seed(3)
    mean_field = TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(3)
    trace = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    assert not torch.allclose(mean_field, trace, atol=1e-4)


@pytest.mark.parametrize("prior", ["mog", "vamp", "flow"])
def test_samples_and_kl_use_the_learned_prior(prior):
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=(8,), prior=prior, vamp_data=torch.rand(10, 6))
    s = vae.sample(4)
    assert s.shape == (4, 6) and (s >= 0).all() and (s <= 1).all()
    x = torch.rand(3, 6)
    loc, scale = vae.encoder(x)
    q = torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)
    torch.manual_seed(1)
    z = q.sample((4000,))
    direct = (q.log_prob(z) - vae.prior().log_prob(z)).mean(0)
    torch.manual_seed(2)
    assert torch.allclose(vae.kl_to_prior(x, num_samples=4000), direct, atol=0.1)


def test_fast_mixture_log_prob_and_gradients_match_the_direct_mixture_even_for_narrow_components():
    from pyro_gen.models.priors import mixture

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    loc = (3 * torch.randn(6, 4, generator=g, dtype=torch.float64)).requires_grad_()
    # scales from 1e-3 to 3: the expanded quadratic form must not cancel for the narrow ones
    scale = torch.logspace(-3, 0.5, 24, dtype=torch.float64).reshape(6, 4).requires_grad_()
    z = loc.detach()[torch.tensor([0, 2, 5, 1, 1])] + 1e-3 * torch.randn(
        5, 4, generator=g, dtype=torch.float64
    )
    fast = mixture(logits, loc, scale)
    direct = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1))
    lp_fast, lp_direct = fast.log_prob(z), direct.log_prob(z)
    assert torch.allclose(lp_fast, lp_direct, rtol=0, atol=1e-8)
    grads_fast = torch.autograd.grad(lp_fast.sum(), (logits, loc, scale))
    grads_direct = torch.autograd.grad(lp_direct.sum(), (logits, loc, scale))
    for a, b in zip(grads_fast, grads_direct, strict=True):
        assert torch.allclose(a, b, rtol=1e-7, atol=1e-7)
    # float32 inputs: computed in float64, returned in float32 within float32 rounding of the exact value
    lp32 = mixture(logits.detach().float(), loc.detach().float(), scale.detach().float()).log_prob(z.float())
    assert lp32.dtype == torch.float32
    assert torch.allclose(lp32.double(), lp_direct.detach(), rtol=1e-5, atol=1e-3)


def test_fast_mixture_under_a_plate_and_with_particles_keeps_its_shapes_and_values():
    from pyro_gen.models.priors import mixture

    torch.manual_seed(0)
    logits, loc, scale = torch.randn(3), torch.randn(3, 2), torch.rand(3, 2) + 0.1
    d = mixture(logits, loc, scale)
    z = torch.randn(7, 5, 2)  # particles x data points x latent
    expanded = d.expand((5,))
    assert expanded.batch_shape == (5,) and type(expanded) is type(d)
    direct = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1))
    assert torch.allclose(expanded.log_prob(z), direct.log_prob(z), atol=1e-5)
    assert expanded.log_prob(z).shape == (7, 5)
    # a general (not broadcast) batch of mixtures falls back to the direct sum
    batched = type(d)(
        dist.Categorical(logits=torch.randn(5, 3)),
        dist.Normal(torch.randn(5, 3, 2), torch.rand(5, 3, 2) + 0.1).to_event(1),
    )
    ref = dist.MixtureSameFamily(batched.mixture_distribution, batched.component_distribution)
    assert torch.allclose(batched.log_prob(z), ref.log_prob(z), atol=1e-5)


def test_mixture_refuses_mismatched_shapes():
    from pyro_gen.models.priors import mixture

    with pytest.raises(ValueError, match="logits"):
        mixture(torch.zeros(3), torch.zeros(4, 2), torch.ones(4, 2))
