"""Energy-based models: the Pyro program, the training objectives against closed forms, the samplers."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from torch import nn

from pyro_gen.inference.ebm import mcmc_sample
from pyro_gen.inference.loss import train_autoencoder
from pyro_gen.models.ebm import (
    EnergyModel,
    MixtureNoise,
    MLPEnergy,
    NoiseConditionalEnergy,
    langevin_steps,
    noise_levels,
    sgld,
)

MEAN = torch.tensor([1.0, -2.0])
COV = torch.tensor([[1.0, 0.6], [0.6, 2.0]])


class QuadraticEnergy(nn.Module):
    """f(z) = z^T A z / 2 + b^T z with A = L L^T: with the confinement, the EBM is a Gaussian."""

    def __init__(self, dim: int, precision: torch.Tensor | None = None, shift: torch.Tensor | None = None):
        super().__init__()
        self.raw = nn.Parameter(torch.eye(dim) if precision is None else torch.linalg.cholesky(precision))
        self.b = nn.Parameter(torch.zeros(dim) if shift is None else shift.clone())

    def a(self) -> torch.Tensor:
        lower = torch.tril(self.raw)
        return lower @ lower.T

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((z @ self.a()) * z).sum(-1) + z @ self.b


def gaussian_of(model: EnergyModel) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Return the mean, covariance (data coordinates) and exact log Z of an EBM with a quadratic energy."""
    d = model.dim
    with torch.no_grad():
        return _gaussian_of(model, d)


def _gaussian_of(model: EnergyModel, d: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    p = (model.net.a() + torch.eye(d) / model.tau**2).double()
    b = model.net.b.double()
    cov_z = torch.linalg.inv(p)
    mean_z = -cov_z @ b
    s = model.scale.double().expand(d)
    log_z_z = 0.5 * d * math.log(2 * math.pi) - 0.5 * torch.logdet(p) + 0.5 * b @ cov_z @ b
    mean = model.loc.double() + s * mean_z
    return mean, s[:, None] * cov_z * s[None, :], float(log_z_z) + float(s.log().sum())


def gaussian_data(n: int = 4000, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return MEAN + torch.randn(n, 2, generator=gen) @ torch.linalg.cholesky(COV).T


def quadratic_model(x: torch.Tensor, **kw) -> EnergyModel:
    return EnergyModel(QuadraticEnergy(2), x.mean(0), x.std(0), **kw)


def test_the_pyro_program_is_a_factor_of_minus_the_energy_in_the_data_plate():
    model = EnergyModel(MLPEnergy(2, (8,)), torch.zeros(2), torch.ones(2), buffer_size=4)
    x = torch.randn(5, 2)
    trace = pyro.poutine.trace(model.model).get_trace(x)
    site = trace.nodes["energy"]
    assert site["cond_indep_stack"][0].name == "data"
    assert torch.allclose(trace.log_prob_sum(), -model.energy(x).sum())


def test_denoising_score_matching_recovers_the_gaussian_convolved_with_its_noise():
    x = gaussian_data()
    model = quadratic_model(x, method="dsm", sigma=0.3)
    train_autoencoder(model, x, steps=600, batch_size=256, lr=3e-2, progress=False)
    mean, cov, _ = gaussian_of(model)
    # DSM fits the data convolved with N(0, sigma^2) in standardized units
    s = model.scale.double()
    target = COV.double() + torch.diag(0.3**2 * s**2)
    assert torch.allclose(mean, MEAN.double(), atol=0.08)
    assert torch.allclose(cov, target, atol=0.15 * float(target.abs().max()))
    assert not torch.allclose(cov, COV.double(), atol=0.05)  # the noise is visible: sigma is large


def test_noise_contrastive_estimation_recovers_the_gaussian_and_its_normalizer():
    x = gaussian_data()
    noise = MixtureNoise(
        torch.ones(1), x.mean(0, keepdim=True), 1.5 * torch.linalg.cholesky(torch.cov(x.T))[None]
    )
    model = quadratic_model(x, method="nce", noise=noise, noise_ratio=4)
    train_autoencoder(model, x, steps=600, batch_size=256, lr=3e-2, progress=False)
    mean, cov, log_z = gaussian_of(model)
    assert torch.allclose(mean, MEAN.double(), atol=0.08)
    assert torch.allclose(cov, COV.double(), atol=0.2)
    assert float(model.nce_log_z.detach()) == pytest.approx(log_z, abs=0.05)


def test_sliced_score_matching_loss_matches_its_closed_form_on_a_gaussian():
    torch.manual_seed(0)
    prec = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    b = torch.tensor([0.3, -0.2])
    model = EnergyModel(QuadraticEnergy(2, prec, b), torch.zeros(2), torch.ones(2), method="ssm", tau=3.0)
    z = torch.randn(20000, 2)
    p = prec + torch.eye(2) / 9.0
    # E_v[v^T (ds/dz) v] = -tr(P); |s|^2 / 2 = |P z + b|^2 / 2
    exact = float(-torch.trace(p) + 0.5 * (z @ p + b).pow(2).sum(-1).mean())
    assert float(model.ssm_loss(z).detach()) == pytest.approx(exact, abs=0.05)


def test_pcd_keeps_its_chains_in_the_module_state_and_leaves_them_alone_in_eval_mode():
    x = gaussian_data(512)
    model = EnergyModel(MLPEnergy(2, (8,)), x.mean(0), x.std(0), buffer_size=64, sgld_steps=3, seed=1)
    assert "replay" in model.state_dict() and model.state_dict()["replay"].shape == (64, 2)
    before = model.replay.clone()
    model.eval()
    model.loss(x[:32])
    assert torch.equal(model.replay, before)
    model.train()
    loss = model.loss(x[:32])
    loss.backward()
    assert not torch.equal(model.replay, before)
    assert all(p.grad is not None for p in model.net.parameters())
    again = EnergyModel(MLPEnergy(2, (8,)), x.mean(0), x.std(0), buffer_size=64, sgld_steps=3, seed=1)
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.replay, model.replay)


def test_sgld_and_the_model_sampler_reproduce_the_moments_of_a_gaussian_energy():
    torch.manual_seed(0)
    prec = torch.tensor([[3.0, 1.0], [1.0, 2.0]])
    b = torch.tensor([1.0, -1.0])
    model = EnergyModel(
        QuadraticEnergy(2, prec, b), torch.tensor([0.5, 0.0]), torch.tensor([2.0, 1.0]), buffer_size=1
    )
    mean, cov, _ = gaussian_of(model)
    x = model.sample(4000, steps=400, step=0.05, step_min=1e-3).double()
    assert torch.allclose(x.mean(0), mean, atol=0.05)
    assert torch.allclose(torch.cov(x.T), cov, atol=0.05 * float(cov.abs().max()) + 0.01)
    # a constant step of a plain energy: ULA's stationary variance 1 / (1 - eps / 4) for E = z^2 / 2
    z = sgld(lambda z: 0.5 * z.pow(2).sum(-1), torch.zeros(20000, 1), langevin_steps(200, 0.5))
    assert float(z.var()) == pytest.approx(1 / (1 - 0.5 / 4), rel=0.05)


@pytest.mark.parametrize("kernel", ["hmc", "nuts"])
def test_pyro_mcmc_reproduces_the_moments_of_a_gaussian_energy(kernel):
    prec = torch.tensor([[3.0, 1.0], [1.0, 2.0]])
    model = EnergyModel(
        QuadraticEnergy(2, prec, torch.tensor([1.0, -1.0])),
        torch.tensor([0.5, 0.0]),
        torch.tensor([2.0, 1.0]),
        buffer_size=1,
    )
    mean, cov, _ = gaussian_of(model)
    x = mcmc_sample(model, 150, num_points=20, kernel=kernel, warmup_steps=100, num_steps=5, seed=0).double()
    assert x.shape == (3000, 2)
    assert torch.allclose(x.mean(0), mean, atol=0.1)
    assert torch.allclose(torch.cov(x.T), cov, atol=0.15 * float(cov.abs().max()))
    assert all(p.requires_grad for p in model.net.parameters())  # left trainable


def test_images_are_dequantized_and_samples_come_back_as_pixels():
    model = EnergyModel(
        MLPEnergy(4, (8,)), torch.tensor(0.5), torch.tensor(0.3), num_levels=17, buffer_size=4, dim=4
    )
    x = torch.tensor([[0.0, 0.5, 1.0, 0.25]])
    v = model.dequantize(x.expand(1000, 4))
    k = torch.round(x * 16)
    assert bool(((v * 17 >= k) & (v * 17 <= k + 1)).all())
    s = model.sample(5, steps=3)
    assert s.shape == (5, 4) and torch.allclose(s * 16, torch.round(s * 16)) and s.min() >= 0 and s.max() <= 1


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match="method must be one of"):
        EnergyModel(MLPEnergy(2), torch.zeros(2), torch.ones(2), method="cd")
    with pytest.raises(ValueError, match="needs a noise"):
        EnergyModel(MLPEnergy(2), torch.zeros(2), torch.ones(2), method="nce")
    model = EnergyModel(MLPEnergy(2), torch.zeros(2), torch.ones(2), buffer_size=1)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        model.check_data(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        model.check_data(torch.tensor([[0.0, float("nan")]]))


class LevelTable(nn.Module):
    """g(z, log sigma) = sigma a_i |z|^2 / 2 for the level i nearest log sigma (last input column):
    through :class:`NoiseConditionalEnergy` an isotropic Gaussian energy of precision ``a_i`` per level."""

    def __init__(self, sigmas: torch.Tensor, init: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("log_sigmas", sigmas.log())
        self.a = nn.Parameter(torch.zeros(len(sigmas)) if init is None else init.clone())

    def forward(self, zs: torch.Tensor) -> torch.Tensor:
        z, log_s = zs[:, :-1], zs[:, -1]
        i = (log_s[:, None] - self.log_sigmas[None, :]).abs().argmin(-1)
        return log_s.exp() * 0.5 * self.a[i] * z.pow(2).sum(-1)


def test_noise_levels_are_geometric_and_bad_levels_are_refused():
    s = noise_levels(1.0, 0.01, 5)
    assert torch.allclose(s, torch.tensor([1.0, 10**-0.5, 0.1, 10**-1.5, 0.01]))
    assert noise_levels(1.0, 0.3, 1).tolist() == pytest.approx([0.3])
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        noise_levels(0.1, 1.0, 3)
    with pytest.raises(ValueError, match="noise levels must be positive"):
        NoiseConditionalEnergy(LevelTable(torch.ones(2)), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="trains with method 'dsm'"):
        EnergyModel(NoiseConditionalEnergy(LevelTable(torch.ones(1)), torch.ones(1)), 0.0, 1.0, dim=2)


def test_multi_noise_dsm_recovers_the_smoothed_gaussian_at_every_level_down_to_the_smallest():
    # data N(0, c^2 I) (standardized units): the optimal energy at level sigma is the Gaussian of
    # variance c^2 + sigma^2, i.e. a_i + 1 / tau^2 = 1 / (c^2 + sigma_i^2)
    torch.manual_seed(0)
    c, sigmas = 0.5, noise_levels(1.0, 0.05, 4)
    model = EnergyModel(
        NoiseConditionalEnergy(LevelTable(sigmas), sigmas), torch.zeros(2), torch.ones(2), method="dsm", dim=2
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 400)
    for _ in range(400):
        opt.zero_grad()
        model.loss(c * torch.randn(4096, 2)).backward()
        opt.step()
        sched.step()
    precision = model.net.net.a.detach() + 1 / model.tau**2
    assert torch.allclose(precision, 1 / (c**2 + sigmas**2), rtol=0.05)
    # the model's own density (no sigma given) is the one at the smallest level
    z = torch.randn(6, 2)
    assert torch.allclose(model.energy_z(z), model.energy_z(z, sigmas[-1]))
    assert not torch.allclose(model.energy_z(z), model.energy_z(z, sigmas[0]))


def test_annealed_langevin_ends_at_the_moments_of_the_smallest_levels_energy():
    sigmas = noise_levels(1.0, 0.1, 3)
    precision = torch.tensor([1.0, 4.0, 25.0])  # variances 1, 0.25, 0.04 at the three levels
    model = EnergyModel(
        NoiseConditionalEnergy(LevelTable(sigmas, precision - 1 / 4.0), sigmas),
        torch.tensor([1.0, -1.0]),
        torch.tensor([2.0, 0.5]),
        method="dsm",
        dim=2,
    )
    torch.manual_seed(1)
    x = model.sample(4000, steps=900, step=0.05, step_min=1e-3)
    z = model.standardize(x)
    assert z.mean(0).abs().max() < 0.02
    assert torch.allclose(z.var(0), torch.full((2,), 0.04), rtol=0.05)
    # the per-step levels follow the blocks: a run of the first block alone keeps the widest energy
    torch.manual_seed(2)
    wide = sgld(
        model.energy_z, torch.zeros(4000, 2), torch.full((200,), 0.05), levels=torch.full((200,), 1.0)
    )
    assert torch.allclose(wide.var(0), torch.ones(2), rtol=0.1)
    with pytest.raises(ValueError, match="one noise level per step"):
        sgld(model.energy_z, torch.zeros(3, 2), torch.full((4,), 0.1), levels=torch.ones(3))
