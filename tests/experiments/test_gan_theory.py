"""GAN theory made visible: the trained discriminator approaches D*, the minimax gradient vanishes."""

import math

import pytest
import torch
from torch import nn

from pyro_gen.experiments.gan_theory import (
    discriminator_optimality,
    generator_gradient_norms,
    gradient_norm,
    optimal_discriminator,
)
from pyro_gen.models.gan import GAN, mlp_discriminator


def affine_gan(loc: float, scale: float, hidden=(32, 32), pack: int = 1) -> GAN:
    """A 1-D GAN whose generator x = loc + scale * z makes p_g = N(loc, scale^2) known."""
    gen = nn.Linear(1, 1)
    with torch.no_grad():
        gen.weight.fill_(scale)
        gen.bias.fill_(loc)
    return GAN(1, 1, gen, mlp_discriminator(1, hidden, pack=pack), pack=pack)


def normal_log_prob(loc, scale):
    return lambda x: torch.distributions.Normal(loc, scale).log_prob(x.squeeze(-1))


def test_optimal_discriminator_formula():
    lp = torch.tensor([0.0, math.log(3.0)])
    torch.testing.assert_close(optimal_discriminator(lp, torch.zeros(2)), torch.tensor([0.5, 0.75]))


def test_gradient_norm_is_the_global_l2_norm():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)
    (3 * a[0] + 4 * b[0]).backward()
    assert gradient_norm([a, b]) == pytest.approx(5.0)
    assert gradient_norm([torch.zeros(3, requires_grad=True)]) == 0.0


def test_trained_discriminator_matches_d_star_on_1d_gaussians():
    # p_data = N(0, 1), fixed generator p_g = N(1, 1.5^2): D* = p_data / (p_data + p_g)
    gan = affine_gan(1.0, 1.5)
    grid = torch.linspace(-2.0, 3.0, 51).unsqueeze(-1)
    res = discriminator_optimality(
        gan,
        lambda m: torch.randn(m, 1),
        normal_log_prob(0.0, 1.0),
        normal_log_prob(1.0, 1.5),
        grid,
        steps=800,
        batch_size=512,
        lr=3e-3,
    )
    assert res["max_abs_error"] < 0.06
    assert res["mean_abs_error"] < 0.03
    # and it is a real comparison: D* varies over the grid far more than the tolerance
    assert float(res["d_star"].max() - res["d_star"].min()) > 0.4


def test_discriminator_optimality_needs_unpacked_gan():
    gan = affine_gan(0.0, 1.0, pack=2)
    with pytest.raises(ValueError, match="pack=1"):
        discriminator_optimality(
            gan, torch.randn, normal_log_prob(0, 1), normal_log_prob(0, 1), torch.zeros(3, 1)
        )


def test_minimax_generator_gradient_vanishes_where_non_saturating_does_not():
    gan = affine_gan(4.0, 0.5)  # generator far from the data N(0, 1): early training
    rows = generator_gradient_norms(gan, torch.randn(2000, 1), d_steps=200, measure_every=100, lr=3e-3)
    first, last = rows[0], rows[-1]
    assert [r["d_step"] for r in rows] == [0, 100, 200]
    assert last["d_accuracy"] > 0.95
    # at initialization D(G(z)) is near 1/2, so both gradients are of the same size
    assert 0.3 < first["minimax_grad_norm"] / first["ns_grad_norm"] < 3.0
    # a confident D: |grad minimax| = E[D(G(z)) ...] << |grad ns| = E[(1 - D(G(z))) ...]
    assert last["minimax_grad_norm"] < 0.05 * last["ns_grad_norm"]
