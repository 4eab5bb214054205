"""Flow guides for the VAE: the guide density is an honest change of variables, and it trains."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_gen.evaluation.likelihood import importance_log_likelihood, log_weights
from pyro_gen.inference import elbo_per_point, fit
from pyro_gen.models.flow_guides import GUIDE_FLOWS, FlowGuideVAE
from pyro_gen.report.flows import log_density_grid


@pytest.mark.parametrize("flow", GUIDE_FLOWS)
def test_guide_log_prob_is_change_of_variables(flow):
    """log q(z|x) = log N(z0; mu, sigma) - log|det dz/dz0|, with the Jacobian by autograd."""
    torch.manual_seed(0)
    vae = FlowGuideVAE(12, 3, (16,), flow=flow, num_flows=3, flow_hidden=(8,))
    with torch.no_grad():
        for p in vae.flows.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.rand(4, 12)

    def push(v, i):  # z0 -> z through freshly conditioned steps (no cached values)
        for t in vae.posterior(x[i : i + 1]).transforms:
            v = t(v)
        return v

    for i in range(4):
        q = vae.posterior(x[i : i + 1])
        z = q.rsample()  # scored below the way Trace_ELBO scores it: by the distribution that drew it
        z0 = _base_point(q, z)
        got = q.log_prob(z).detach()
        jac = torch.autograd.functional.jacobian(
            lambda v, i=i: push(v.unsqueeze(0), i).squeeze(0), z0.detach()
        )
        expected = q.base_dist.log_prob(z0).detach() - torch.linalg.slogdet(jac)[1]
        assert torch.allclose(got, expected, atol=1e-4), (got, expected)
        assert torch.allclose(push(z0.unsqueeze(0), i), z, atol=1e-5)


def _base_point(q, z):
    for t in reversed(q.transforms):
        z = t.inv(z)  # hits each step's cache: the exact z0 the sample came from
    return z.squeeze(0)


def test_iaf_guide_density_integrates_to_one():
    torch.manual_seed(1)
    vae = FlowGuideVAE(10, 2, (16,), flow="iaf", num_flows=2, flow_hidden=(8,))
    with torch.no_grad():
        for p in vae.flows.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = torch.rand(1, 10)
    q = vae.posterior(x)
    loc, scale = q.base_dist.base_dist.loc[0].detach(), q.base_dist.base_dist.scale[0].detach()
    lo, hi = loc - 8 * scale - 3, loc + 8 * scale + 3
    box = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))

    def log_q(z):
        d = vae.posterior(x.expand(z.shape[0], -1))
        for t in d.transforms:
            t.clear_cache()
        return d.log_prob(z).detach()

    _, _, logp = log_density_grid(log_q, box, num=250, batch_size=4096)
    cell = (box[1] - box[0]) * (box[3] - box[2]) / 250**2
    mass = math.exp(float(torch.logsumexp(torch.as_tensor(logp).reshape(-1), 0))) * cell
    assert mass == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("flow", GUIDE_FLOWS)
def test_flow_guide_log_weights_under_vectorized_particles(flow):
    """Particles drawn in one vectorized pass score like the same draws made one point at a time."""
    torch.manual_seed(2)
    x = torch.bernoulli(torch.rand(5, 16) * 0.8 + 0.1)
    vae = FlowGuideVAE(16, 2, (32,), flow=flow, num_flows=2, flow_hidden=(8,))
    lw = log_weights(vae.model, vae.guide, x, 7)
    assert lw.shape == (7, 5) and bool(torch.isfinite(lw).all())
    torch.manual_seed(3)
    q = vae.posterior(x)
    z = q.rsample()
    expected = vae.prior().log_prob(z) + vae.likelihood_dist(z).log_prob(x) - q.log_prob(z)
    torch.manual_seed(3)
    one = log_weights(vae.model, vae.guide, x, 1, max_plate_nesting=1)[0]
    assert torch.allclose(one, expected.detach(), atol=1e-4)
    ev = importance_log_likelihood(vae, x, k=64)
    assert ev["log_likelihood"] >= ev["elbo"]  # the IS bound sits above the ELBO of the same draws


@pytest.mark.slow
def test_flow_guide_training_raises_elbo():
    torch.manual_seed(2)
    x = torch.bernoulli(torch.rand(64, 16) * 0.8 + 0.1)
    vae = FlowGuideVAE(16, 2, (32,), flow="iaf", num_flows=2, flow_hidden=(8,))
    before = elbo_per_point(vae.model, vae.guide, x, num_particles=20)
    fit(vae, x, steps=400, batch_size=32, lr=3e-3, progress=False)
    assert elbo_per_point(vae.model, vae.guide, x, num_particles=20) > before + 1.0


def test_bad_flow_arguments():
    with pytest.raises(ValueError, match="flow must be one of"):
        FlowGuideVAE(8, 2, (8,), flow="maf")
    with pytest.raises(ValueError, match="num_flows"):
        FlowGuideVAE(8, 2, (8,), flow="iaf", num_flows=0)
