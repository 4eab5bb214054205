import pyro
import pytest
import torch

from pyro_gen.inference import make_estimator
from pyro_gen.inference.compiled import CompiledTrace_ELBO
from pyro_gen.models import VAE, minibatch


def _grads(vae):
    return [p.grad.clone() for p in vae.parameters()]


@pytest.fixture
def zero_noise(monkeypatch):
    # Fix the reparameterization noise at eps = 0 in both eager and traced code, so the compiled
    # ELBO and Trace_ELBO must agree exactly as functions of the parameters.
    import torch.distributions.normal as normal_mod

    monkeypatch.setattr(
        normal_mod,
        "_standard_normal",
        lambda shape, dtype, device: torch.zeros(shape, dtype=dtype, device=device),
    )


@pytest.mark.parametrize("num_particles", [1, 3])
def test_compiled_elbo_equals_trace_elbo_value_and_gradient(zero_noise, num_particles):
    torch.manual_seed(0)
    vae = VAE(10, 3, hidden=(16,))
    x = torch.bernoulli(torch.rand(8, 10))
    compiled = make_estimator("jit", num_particles=num_particles)
    assert isinstance(compiled, CompiledTrace_ELBO)
    reference = pyro.infer.Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1)
    with minibatch(100, torch.arange(8)):
        a = compiled.differentiable_loss(vae.model, vae.guide, x)
        a = compiled.differentiable_loss(vae.model, vae.guide, x)  # second call: the compiled graph
        a.backward()
        ga = _grads(vae)
        vae.zero_grad()
        b = reference.differentiable_loss(vae.model, vae.guide, x)
        b.backward()
        gb = _grads(vae)
    assert torch.allclose(a, b, rtol=1e-5)
    for u, v in zip(ga, gb):
        assert torch.allclose(u, v, rtol=1e-4, atol=1e-5)


def test_compiled_elbo_tracks_parameter_updates_and_shapes(zero_noise):
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=(8,))
    elbo = CompiledTrace_ELBO()
    x = torch.bernoulli(torch.rand(5, 6))
    elbo.loss(vae.model, vae.guide, x)
    with torch.no_grad():
        vae.decoder[-1].bias.add_(3.0)  # changes the likelihood: the compiled graph must see it
    a = elbo.loss(vae.model, vae.guide, x)
    b = pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, x)
    assert a == pytest.approx(b, rel=1e-5)
    elbo.loss(vae.model, vae.guide, x[:3])  # a new shape compiles a new graph
    assert len(elbo._compiled) == 2


def test_compiled_elbo_draws_fresh_noise_and_is_unbiased():
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=(8,))
    x = torch.bernoulli(torch.rand(20, 6))
    compiled, eager = CompiledTrace_ELBO(), pyro.infer.Trace_ELBO()
    a = torch.tensor([compiled.loss(vae.model, vae.guide, x) for _ in range(400)])
    b = torch.tensor([eager.loss(vae.model, vae.guide, x) for _ in range(400)])
    assert a.std() > 0.1  # not a frozen sample
    se = (a.var() / 400 + b.var() / 400).sqrt()
    assert abs(a.mean() - b.mean()) < 4 * se
