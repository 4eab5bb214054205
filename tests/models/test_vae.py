import pyro
import pytest
import torch

from pyro_gen.models import VAE


def test_bernoulli_refuses_data_outside_unit_interval():
    vae = VAE(6, 2, hidden=(8,))
    with pytest.raises(ValueError, match=r"data has values in \[-0.5, 1\]"):
        vae.check_data(torch.tensor([[-0.5, 0, 1, 1, 0, 0.5]]))
    vae.check_data(torch.rand(3, 6))  # grey levels are fine
    gauss = VAE(6, 2, hidden=(8,), likelihood="gaussian")
    gauss.check_data(torch.randn(3, 6) * 5)
    with pytest.raises(ValueError, match="likelihood"):
        VAE(6, 2, likelihood="poisson")


def test_model_guide_trace_shapes_and_log_density():
    vae = VAE(6, 3, hidden=(8,))
    x = torch.bernoulli(torch.rand(5, 6))
    guide_tr = pyro.poutine.trace(vae.guide).get_trace(x)
    model_tr = pyro.poutine.trace(pyro.poutine.replay(vae.model, trace=guide_tr)).get_trace(x)
    z = guide_tr.nodes["z"]["value"]
    assert z.shape == (5, 3)
    logits = vae.decoder(z)
    manual = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum()
    assert torch.allclose(model_tr.nodes["x"]["fn"].log_prob(x).sum(), manual)


def test_encode_decode_sample_interpolate():
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=(8,))
    x = torch.rand(4, 6)
    loc, scale = vae.encode(x)
    assert loc.shape == (4, 2) and (scale > 0).all()
    assert torch.allclose(vae.reconstruct(x), vae.decode(loc))
    s = vae.sample(10)
    assert s.shape == (10, 6) and (s >= 0).all() and (s <= 1).all()
    assert set(vae.sample(10, mean=False).unique().tolist()) <= {0.0, 1.0}
    path = vae.interpolate(x[0], x[1], steps=5)
    assert torch.allclose(path[0], vae.decode(loc[:1])[0], atol=1e-6)
    assert torch.allclose(path[-1], vae.decode(loc[1:2])[0], atol=1e-6)


def test_output_bias_initialised_to_data_mean():
    vae = VAE(3, 2, hidden=(4,))
    mean = torch.tensor([0.1, 0.5, 0.9])
    vae.init_output_bias(mean)
    with torch.no_grad():
        vae.decoder[-1].weight.zero_()
    assert torch.allclose(vae.decode(torch.zeros(1, 2))[0], mean, atol=1e-6)


def test_learned_gaussian_scale_is_a_parameter():
    vae = VAE(3, 2, hidden=(4,), likelihood="gaussian", gaussian_scale=0.3, learn_scale=True)
    assert any(n == "raw_scale" for n, _ in vae.named_parameters())
    d = vae.likelihood_dist(torch.zeros(1, 2))
    assert torch.allclose(d.base_dist.scale, torch.full((3,), 0.3), atol=1e-6)
