"""ICA experiments: Amari distance, recovery of a mixing matrix by ML, SVI and FastICA."""

import math

import pytest
import torch

from pyro_gen.experiments.ica import amari_distance, compare_ica, fit_ica, mixed_sources
from pyro_gen.models.ica import ICA, NoisyICA, whitening_matrix


def test_amari_distance_is_zero_exactly_for_scaled_permutations():
    a = torch.tensor([[1.0, 0.5, 0.2], [0.3, 2.0, -0.4], [0.1, 0.2, 1.5]])
    perm_scale = torch.tensor([[0.0, 3.0, 0.0], [-0.5, 0.0, 0.0], [0.0, 0.0, 2.0]])
    assert amari_distance(a @ perm_scale, a) < 1e-9
    assert amari_distance(a, a) < 1e-9
    d = amari_distance(torch.eye(3), a)
    assert 0.05 < d <= 1.0
    # worst case: all-equal magnitudes gives 1
    assert abs(amari_distance(torch.eye(2), torch.tensor([[1.0, 1.0], [1.0, -1.0]])) - 1.0) < 1e-12
    with pytest.raises(ValueError, match="square"):
        amari_distance(torch.eye(3), torch.eye(2))


def test_ml_svi_and_fastica_recover_laplace_mixing():
    x, s, a = mixed_sources(2000, 3, "laplace", seed=1)
    assert torch.allclose(x, s @ a.T)
    ml = fit_ica(x, method="ml", steps=600)
    assert amari_distance(ml.model.mixing_, a) < 0.05
    # the recovered sources match the true ones up to permutation and scale
    corr = torch.corrcoef(torch.cat([ml.model.transform(x), s], 1).T)[:3, 3:].abs()
    assert torch.all(corr.max(1).values > 0.97)
    # ML's log-likelihood beats the starting (whitening) point's
    w0 = whitening_matrix(x)
    start = float(ICA(3, init_unmixing=w0, mean=x.mean(0)).log_prob(x).mean())
    assert float(ml.model.log_prob(x).mean()) > start + 0.05
    svi = fit_ica(x, method="svi", steps=1200)
    assert isinstance(svi.model, NoisyICA)
    assert amari_distance(svi.model.mixing_, a) < 0.1


def test_compare_ica_reports_all_three_methods():
    out = compare_ica(1500, 2, "laplace", seed=2, steps=300, svi_steps=300)
    assert set(out) == {"ml", "svi", "fastica"}
    assert out["fastica"]["amari"] < 0.1 and out["ml"]["amari"] < 0.1
    assert all(v["seconds"] > 0 for v in out.values())
    # the gradient fits report the trainer's own clock: seconds are the training time, per step
    for method in ("ml", "svi"):
        costs = out[method]["costs"]
        assert costs["train_seconds"] == out[method]["seconds"]
        assert costs["ms_per_step"] == pytest.approx(1000 * costs["train_seconds"] / costs["steps"])
        assert costs["steps"] == 300


def test_fit_ica_refuses_an_unknown_method():
    with pytest.raises(ValueError, match="method"):
        fit_ica(torch.randn(10, 2), method="em")


def test_logistic_sources_have_the_right_scale():
    _, s, _ = mixed_sources(20000, 1, "logistic", seed=0)
    assert abs(float(s.var()) - math.pi**2 / 3) < 0.15
    _, s, _ = mixed_sources(20000, 1, "laplace", seed=0)
    assert abs(float(s.var()) - 2.0) < 0.1
