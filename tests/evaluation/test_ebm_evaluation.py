"""The normalizer of an energy model: quadrature and annealed importance sampling against exact log Z."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pyro_gen.evaluation.ebm import (
    ais_log_normalizer,
    dequantized_log_density,
    ebm_quadrature,
    quadrature_log_normalizer,
    sigmoid_schedule,
)
from pyro_gen.models.ebm import EnergyModel


class Quadratic(nn.Module):
    """f(z) = (z - m)^T A (z - m) / 2 with a fixed A: the model is a Gaussian with known Z."""

    def __init__(self, a: torch.Tensor, m: torch.Tensor):
        super().__init__()
        self.a, self.m = nn.Parameter(a.clone()), nn.Parameter(m.clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        d = z - self.m
        return 0.5 * ((d @ self.a) * d).sum(-1)


def exact_log_z(model: EnergyModel) -> float:
    """log of the integral of exp(-f(z) - |z|^2 / (2 tau^2)) dx, in closed form."""
    with torch.no_grad():
        a, m = model.net.a.double(), model.net.m.double()
        d = a.shape[0]
        p = a + torch.eye(d, dtype=torch.float64) / model.tau**2
        h = a @ m  # E = z^T P z / 2 - h^T z + m^T A m / 2
        log_z = (
            0.5 * d * math.log(2 * math.pi)
            - 0.5 * torch.logdet(p)
            + 0.5 * h @ torch.linalg.solve(p, h)
            - 0.5 * m @ a @ m
        )
        return float(log_z) + model.log_scale_sum()


def gaussian_model(d: int, seed: int = 0, scale: float = 1.5) -> EnergyModel:
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(d, d, generator=gen)
    a = q @ q.T / d + 0.5 * torch.eye(d)
    m = 0.5 * torch.randn(d, generator=gen)
    return EnergyModel(Quadratic(a, m), torch.zeros(d), torch.full((d,), scale), buffer_size=1, tau=2.0)


def test_quadrature_integrates_a_gaussian_energy_to_its_exact_log_normalizer():
    cov = torch.tensor([[0.5, 0.3], [0.3, 1.0]], dtype=torch.float64)
    prec = torch.linalg.inv(cov)

    def log_f(x: torch.Tensor) -> torch.Tensor:
        x = x.double() - torch.tensor([0.5, -1.0], dtype=torch.float64)
        return -0.5 * ((x @ prec) * x).sum(-1) + 3.0  # unnormalized, scaled by e^3

    exact = 3.0 + math.log(2 * math.pi) + 0.5 * float(torch.logdet(cov))
    uniform = quadrature_log_normalizer(log_f, (-8, 8, -8, 8), cells=320)
    assert uniform["log_z"] == pytest.approx(exact, abs=1e-8) and uniform["refined_mass"] == 0
    # a composite grid: O(h^2) errors where the cell size changes
    res = quadrature_log_normalizer(log_f, (-8, 8, -8, 8), (-1, 2, -3, 1), cells=160, refine=4)
    assert res["log_z"] == pytest.approx(exact, abs=1e-3)
    assert res["edge_mass"] < 1e-9 and 0.5 < res["refined_mass"] < 1.0
    # a box that cuts the density off says so through the edge mass
    assert quadrature_log_normalizer(log_f, (-1, 1, -1, 1), cells=50)["edge_mass"] > 0.05


def test_model_quadrature_gives_the_exact_log_z_and_its_error_estimate():
    model = gaussian_model(2)
    data = model.unstandardize(torch.randn(500, 2))
    res = ebm_quadrature(model, data, cell=0.02, coarse_cell=0.2)
    assert res["log_z"] == pytest.approx(exact_log_z(model), abs=1e-4)
    assert res["quadrature_error"] < 1e-3
    with pytest.raises(ValueError, match="2-D"):
        ebm_quadrature(gaussian_model(3), torch.zeros(4, 3))


def test_ais_recovers_the_exact_log_z_of_a_gaussian_energy_within_its_reported_error():
    model = gaussian_model(6, seed=1)
    res = ais_log_normalizer(model, num_chains=50, num_runs=4, num_steps=150, leapfrog_steps=3, seed=0)
    exact = exact_log_z(model)
    assert len(res["log_z_runs"]) == 4 and res["log_z_std"] > 0
    assert abs(res["log_z"] - exact) < 3 * res["log_z_std"]
    assert 0.3 < res["acceptance"] <= 1.0 and res["ess"] > 10
    # far from the base: a real correction, not just log Z_base
    assert abs(exact - model.base_log_normalizer()) > 10 * res["log_z_std"]
    assert all(p.requires_grad for p in model.parameters())


def test_ais_with_one_temperature_is_plain_importance_sampling_from_the_base():
    model = gaussian_model(1, seed=2)
    a = ais_log_normalizer(model, num_chains=20000, num_runs=1, num_steps=1, leapfrog_steps=1, seed=3)
    assert a["log_z"] == pytest.approx(exact_log_z(model), abs=0.02)
    assert math.isnan(a["log_z_std"])


def test_sigmoid_schedule_runs_from_zero_to_one_increasing():
    b = sigmoid_schedule(10)
    assert b.shape == (11,) and b[0] == 0 and b[-1] == 1 and bool((b.diff() > 0).all())
    with pytest.raises(ValueError):
        sigmoid_schedule(0)


def test_dequantized_density_carries_the_cell_volume_of_the_levels():
    model = EnergyModel(
        Quadratic(torch.zeros(4, 4), torch.zeros(4)),
        torch.tensor(0.5),
        torch.tensor(1.0),
        num_levels=4,
        buffer_size=1,
        dim=4,
        tau=1e3,
    )
    # a flat energy: -E = -|z|^2 / (2 tau^2) ~ 0, so the value is -D log L
    x = torch.tensor([[0.0, 1 / 3, 2 / 3, 1.0]])
    assert float(dequantized_log_density(model, x, samples=3)) == pytest.approx(-4 * math.log(4), abs=1e-5)
