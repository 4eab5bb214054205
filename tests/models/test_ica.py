"""ICA models: the exact density is a change of variables, and bad arguments are refused."""

import pytest
import torch

from pyro_gen.models.ica import ICA, source_prior, whitening_matrix


def test_ica_density_is_change_of_variables():
    # diagonal unmixing: independent Laplace marginals with scales 1 / w_i
    w = torch.tensor([2.0, 0.5])
    ica = ICA(2, init_unmixing=torch.diag(w))
    x = torch.randn(5, 2)
    expected = torch.distributions.Laplace(0.0, 1.0 / w).log_prob(x).sum(-1)
    assert torch.allclose(ica.log_prob(x), expected, atol=1e-5)


@pytest.mark.parametrize("prior", ["laplace", "logistic"])
def test_ica_density_integrates_to_one(prior):
    ica = ICA(2, prior=prior, init_unmixing=torch.tensor([[1.0, 0.6], [-0.3, 0.8]]))
    g = torch.linspace(-40, 40, 1601)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    mass = ica.log_prob(pts).double().exp().sum() * (g[1] - g[0]) ** 2
    assert abs(float(mass) - 1.0) < 1e-3


def test_bad_priors_and_shapes_are_refused():
    with pytest.raises(ValueError, match="prior"):
        source_prior("gaussian", 2)
    with pytest.raises(ValueError, match="prior"):
        ICA(2, prior="normal")
    with pytest.raises(ValueError, match="singular"):
        whitening_matrix(torch.randn(50, 1) @ torch.ones(1, 3))
    with pytest.raises(ValueError, match="shape"):
        ICA(3).check_data(torch.zeros(4, 2))
