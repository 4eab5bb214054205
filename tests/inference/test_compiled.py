import pyro
import pytest
import torch

from pyro_gen.inference import fit, make_estimator
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


class _Branchy(torch.nn.Module):
    """A model whose structure depends on the data's values: a trace of one batch is wrong for others."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(3))

    def model(self, x):
        from pyro_gen.models import data_plate

        scale = 1.0 if float(x.sum()) > 0 else 5.0  # Python control flow on a tensor
        with data_plate(x):
            pyro.sample("x", pyro.distributions.Normal(self.loc, scale).to_event(1), obs=x)

    def guide(self, x):
        pass


def test_compiled_elbo_falls_back_when_the_structure_depends_on_the_data():
    m = _Branchy()
    elbo = CompiledTrace_ELBO()
    pos, neg = torch.ones(4, 3), -torch.ones(4, 3)
    elbo.loss(m.model, m.guide, pos)
    assert elbo.compiled
    # the second call of the graph is checked: another branch, another value
    value = elbo.loss(m.model, m.guide, neg)
    assert not elbo.compiled and "differs from Trace_ELBO" in elbo.fallback_reason
    assert value == pytest.approx(pyro.infer.Trace_ELBO().loss(m.model, m.guide, neg), rel=1e-6)


def test_compiled_elbo_falls_back_for_params_outside_the_module_and_plain_functions():
    class WithParam(torch.nn.Module):
        def model(self, x):
            loc = pyro.param("loc", torch.zeros(3))
            pyro.sample("x", pyro.distributions.Normal(loc, 1.0).to_event(1), obs=x[0])

        def guide(self, x):
            pass

    m, x = WithParam(), torch.ones(2, 3)
    elbo = CompiledTrace_ELBO()
    elbo.loss(m.model, m.guide, x)
    assert "pyro.param sites outside the module (loc)" in elbo.fallback_reason
    elbo = CompiledTrace_ELBO()
    elbo.loss(lambda x: m.model(x), m.guide, x)
    assert "not two methods of one nn.Module" in elbo.fallback_reason


def test_compiling_draws_nothing_from_the_random_stream():
    # tracing and checking run on copies of the random state: after any number of compiled
    # calls the stream is where the same number of uncompiled calls leaves it
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=(8,))
    x = torch.bernoulli(torch.rand(5, 6))
    compiled, eager = make_estimator("jit"), make_estimator("reparam")
    for elbo in (compiled, eager):
        torch.manual_seed(1)
        values = [float(elbo.differentiable_loss(vae.model, vae.guide, x).detach()) for _ in range(3)]
        after = torch.rand(1)
        if elbo is compiled:
            first = (values, after)
    assert compiled.compiled
    assert torch.equal(first[1], after)
    assert first[0] == pytest.approx(values, rel=1e-5)


def test_fit_auto_notes_an_uncompiled_run():
    def model(x):
        loc = pyro.param("loc", torch.zeros(3))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", pyro.distributions.Normal(loc, 1.0).to_event(1), obs=x)

    res = fit(model, torch.randn(20, 3), guide=lambda x: None, steps=2, batch_size=10, progress=False)
    assert res.estimator == "auto"
    assert len(res.notes) == 1 and "ran uncompiled" in res.notes[0]
    vae = VAE(64, 2, hidden=(8,))
    res = fit(vae, torch.bernoulli(torch.rand(30, 64)), steps=2, batch_size=10, progress=False)
    assert res.notes == []




def test_a_tracing_failure_without_a_message_falls_back(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError()

    monkeypatch.setattr(torch.jit, "trace", fail)
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=(8,))
    x = torch.bernoulli(torch.rand(5, 6))
    elbo = CompiledTrace_ELBO()
    value = elbo.loss(vae.model, vae.guide, x)
    assert elbo.fallback_reason == "tracing failed (RuntimeError)" and value == value
