import pytest
import torch
from linear_gaussian import closed_form_elbo, exact_log_marginal, linear_gaussian_vae

from pyro_gen.evaluation import importance_log_likelihood, log_weights


def test_is_estimate_approaches_exact_log_marginal():
    vae, W, b, s = linear_gaussian_vae()
    x = torch.randn(64, 4) * 1.5
    exact = exact_log_marginal(x, W, b, s).mean().item()
    elbo_exact = closed_form_elbo(vae, x, W, b, s).mean().item()
    ests = {k: importance_log_likelihood(vae, x, k=k)["log_likelihood"] for k in (1, 10, 100, 5000)}
    assert elbo_exact < exact - 0.01  # the mean-field guide leaves a gap
    # the IWAE bound is below log p(x) and tightens with k (small MC slack)
    for k1, k2 in ((1, 10), (10, 100), (100, 5000)):
        assert ests[k2] > ests[k1] - 0.01
    assert ests[5000] <= exact + 0.01
    assert abs(ests[5000] - exact) < 0.1 * abs(exact - elbo_exact) + 0.005
    assert abs(ests[1] - elbo_exact) < 0.15


def test_elbo_matches_closed_form_and_chunking_is_invisible():
    vae, W, b, s = linear_gaussian_vae(seed=1)
    x = torch.randn(32, 4)
    torch.manual_seed(0)
    a = importance_log_likelihood(vae, x, k=4000, chunk_size=4000, batch_size=32)
    torch.manual_seed(0)
    c = importance_log_likelihood(vae, x, k=4000, chunk_size=333, batch_size=7)
    closed = closed_form_elbo(vae, x, W, b, s).mean().item()
    assert abs(a["elbo"] - closed) < 0.05
    assert abs(a["log_likelihood"] - c["log_likelihood"]) < 0.02
    assert a["per_point"].shape == (32,)
    assert a["bits_per_dim"] == pytest.approx(-a["log_likelihood"] / (4 * 0.6931471805599453))


def test_log_weights_shape_and_bad_input():
    vae, *_ = linear_gaussian_vae()
    lw = log_weights(vae.model, vae.guide, torch.randn(5, 4), 7)
    assert lw.shape == (7, 5) and torch.isfinite(lw).all()
    with pytest.raises(ValueError, match="k must be a positive integer"):
        importance_log_likelihood(vae, torch.randn(3, 4), k=0)
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        importance_log_likelihood(vae, torch.randn(3, 5), k=2)


def test_bernoulli_pixels_are_scored_like_torch_and_other_sites_by_their_own_log_prob():
    import pyro.distributions as dist

    from pyro_gen.evaluation.likelihood import site_log_prob

    torch.manual_seed(0)
    logits = torch.randn(7, 5, 30) * 4
    for value in (torch.bernoulli(torch.full((5, 30), 0.3)), torch.rand(5, 30)):  # 0/1 pixels, grey levels
        for fn in (
            dist.Bernoulli(logits=logits, validate_args=False).to_event(1),
            dist.Bernoulli(probs=torch.sigmoid(logits), validate_args=False).to_event(2),
        ):
            ours, theirs = site_log_prob(fn, value), fn.log_prob(value)
            assert ours.shape == theirs.shape
            assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-4)
    normal = dist.Normal(torch.zeros(3, 4), 1.0).to_event(1)
    z = torch.randn(3, 4)
    assert torch.equal(site_log_prob(normal, z), normal.log_prob(z))
