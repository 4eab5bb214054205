"""Flow densities: invertibility and log-determinants of every transform, normalization, dequantization.

The transform properties are property-based (hypothesis draws the parameter perturbation,
the inputs' scale and the seed) in low dimension, for every transform offered.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_gen.data import two_moons
from pyro_gen.inference import elbo_per_point, fit
from pyro_gen.models.flows import (
    TRANSFORMS,
    Dequantized,
    FlowDensity,
    canonical_transform,
    make_transform,
)
from pyro_gen.report.flows import log_density_grid


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _fresh(t, x):
    t.clear_cache()
    return t(x)


def _jacobian_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """log|det d fn / dx| for each row of x, by autograd."""
    out = []
    for row in x:
        jac = torch.autograd.functional.jacobian(lambda v: fn(v.unsqueeze(0)).squeeze(0), row)
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


class _Float64:
    """Default dtype float64 inside the block (hypothesis re-runs the body, so no fixture)."""

    def __enter__(self):
        self.old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.old)


@pytest.mark.parametrize("name", TRANSFORMS)
@settings(max_examples=6, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 2**16),
    scale=st.floats(0.25, 3.0),
    dim=st.integers(2, 4),
    perturb=st.floats(0.0, 0.5),
)
def test_transform_inverse_and_logdet(name, seed, scale, dim, perturb):
    with _Float64():
        torch.manual_seed(seed)
        module, _ = make_transform(name, dim, hidden=(8, 8))
        with torch.no_grad():  # move away from near-identity initialisations
            for p in module.parameters():
                p.add_(perturb * torch.randn_like(p))
        x = scale * torch.randn(4, dim)
        # the module's own forward direction is differentiable: compare with autograd
        y = _fresh(module, x)
        ldj = module.log_abs_det_jacobian(x, y).reshape(-1)
        expected = _jacobian_logdet(lambda v: _fresh(module, v), x)
        assert torch.allclose(ldj, expected, atol=1e-7), (ldj, expected)
        # its inverse (closed form, sequential or numerical) recovers x from a fresh y ...
        module.clear_cache()
        y = y.detach().clone()
        x_back = module.inv(y)
        assert torch.allclose(x_back, x, atol=1e-7), (x_back - x).abs().max()
        # ... and reports the negated log-determinant at that point
        inv_ldj = module.inv.log_abs_det_jacobian(y, x_back).reshape(-1)
        assert torch.allclose(inv_ldj, -expected, atol=1e-6)


@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_flow_log_prob_is_change_of_variables(name, batch_norm, float64):
    """log p(x) = log N(f(x)) + log|det df/dx| with f the data-to-base map, Jacobian by autograd."""
    torch.manual_seed(3)
    depth = 2 if name == "naf" else 3  # NAF samples by bisection: keep it small
    flow = FlowDensity(3, name, depth=depth, hidden=(8, 8), batch_norm=batch_norm)
    flow.init_from_data(torch.randn(100, 3) * torch.tensor([1.0, 2.0, 0.5]) + 1.0)
    flow.eval()
    transforms = flow.continuous().transforms

    def to_base(v):
        flow.clear_cache()
        for t in reversed(transforms):
            v = t.inv(v)
        return v

    x = torch.randn(4, 3) * 1.5
    expected = dist.Normal(0.0, 1.0).log_prob(to_base(x)).sum(-1) + _jacobian_logdet(to_base, x)
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-7)
    # sampling inverts the same map: samples pushed back through f are their base draws
    if name == "naf":
        return  # NAF samples by bisection (slow); its inverse is checked per block above
    torch.manual_seed(4)
    s = flow.sample(3)
    torch.manual_seed(4)
    z = flow.base().sample((3,))
    assert torch.allclose(to_base(s), z, atol=1e-6)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_untrained_flow_density_integrates_to_one(name, float64):
    torch.manual_seed(5)
    # Pyro's rational-quadratic splines start with sharp features: one block, a finer grid
    depth, box, num, tol = (1, 4.0, 300, 0.01) if name == "spline_coupling" else (2, 9.0, 200, 5e-3)
    flow = FlowDensity(2, name, depth=depth, hidden=(16, 16))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    flow.eval()
    _, _, logp = log_density_grid(flow.log_prob, (-box, box, -box, box), num=num)
    mass = math.exp(float(torch.logsumexp(torch.as_tensor(logp).reshape(-1), 0))) * (2 * box / num) ** 2
    assert mass == pytest.approx(1.0, abs=tol)


def test_trained_moons_flow_normalizes_and_beats_a_gaussian():
    from sklearn.mixture import GaussianMixture

    data = two_moons(num_samples=4000, num_test=1000)
    flow = FlowDensity(2, "maf", depth=4, hidden=(32, 32)).init_from_data(data.train)
    fit(flow, data.train, steps=250, batch_size=256, lr=5e-3, progress=False)
    with torch.no_grad():
        test_ll = float(flow.log_likelihood(data.test).mean())
        gauss = GaussianMixture(1, covariance_type="full").fit(data.train.double().numpy())
        gauss_ll = float(gauss.score(data.test.double().numpy()))
        assert test_ll > gauss_ll + 0.3, (test_ll, gauss_ll)
        _, _, logp = log_density_grid(flow.log_prob, (-3.5, 4.5, -3.0, 3.5), num=400)
    mass = math.exp(float(torch.logsumexp(torch.as_tensor(logp).reshape(-1), 0))) * (8 / 400) * (6.5 / 400)
    assert mass == pytest.approx(1.0, abs=0.02)


def test_model_elbo_is_exact_log_likelihood():
    torch.manual_seed(0)
    x = torch.randn(64, 2)
    flow = FlowDensity(2, "affine_coupling", depth=2, hidden=(8,)).init_from_data(x)
    flow.eval()
    assert elbo_per_point(flow.model, flow.guide, x) == pytest.approx(
        float(flow.log_prob(x).detach().mean()), abs=1e-4
    )


def test_zuko_backend_matches_zuko_density():
    zuko = pytest.importorskip("zuko")
    torch.manual_seed(0)
    zf = zuko.flows.NSF(features=2, transforms=2, hidden_features=(16, 16))
    x = torch.randn(200, 2) * torch.tensor([2.0, 0.5]) + 3.0
    flow = FlowDensity(2, zuko_flow=zf).init_from_data(x)
    flow.eval()
    expected = zf().log_prob((x - flow.loc) / flow.scale) - flow.scale.log().sum()
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-5)
    assert flow.sample(7).shape == (7, 2)
    assert flow.num_parameters() == sum(p.numel() for p in zf.parameters())
    # trainable with the same fit: the held-out log-likelihood goes up
    before = float(flow.log_prob(x).detach().mean())
    fit(flow, x, steps=60, batch_size=100, lr=1e-2, progress=False)
    with torch.no_grad():
        assert float(flow.log_prob(x).mean()) > before + 0.2


# ----------------------------------------------------------------------------- images
def _uniform_logistic_flow(dim: int, levels: int) -> FlowDensity:
    """An image flow whose continuous pixel density is exactly uniform: logistic base, no layers."""
    flow = FlowDensity(dim, "radial", depth=1, num_levels=levels, alpha=0.0)
    logistic = dist.TransformedDistribution(
        dist.Uniform(torch.zeros(dim), torch.ones(dim)).to_event(1), [dist.transforms.SigmoidTransform().inv]
    )
    flow._generative = []
    flow.base = lambda: logistic
    return flow


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_dequantized_bits_per_dim_of_uniform_pixels(levels):
    torch.manual_seed(0)
    flow = _uniform_logistic_flow(6, levels)
    x = torch.randint(0, levels, (50, 6)).float() / (levels - 1)
    assert flow.bits_per_dim(x) == pytest.approx(math.log2(levels), abs=1e-4)
    assert flow.bits_per_dim(x, num_samples=8) == pytest.approx(math.log2(levels), abs=1e-4)


def test_dequantized_likelihood_converges_to_bin_probability():
    """Continuous density p(v) = 2v on [0, 1], L = 4 bins: P(k) = (2k + 1) / 16."""
    torch.manual_seed(0)
    flow = FlowDensity(1, "radial", depth=1, num_levels=4)
    flow.continuous = lambda: dist.Beta(torch.tensor([2.0]), torch.tensor([1.0])).to_event(1)
    k = torch.arange(4.0)
    x = (k / 3).unsqueeze(-1)
    exact = torch.log((2 * k + 1) / 16)
    is_estimate = flow.log_likelihood(x, num_samples=20000)
    assert torch.allclose(is_estimate, exact, atol=0.02)
    single = flow.log_likelihood(x.repeat(2000, 1), 1).reshape(2000, 4).mean(0)
    assert bool((single < exact).all())  # Jensen: the training objective is a lower bound


def test_image_flow_samples_grey_levels_and_trains_on_digits():
    from pyro_gen.data import load_digits

    torch.manual_seed(0)
    data = load_digits()
    flow = FlowDensity(64, "maf", depth=2, hidden=(128,), num_levels=17).init_from_data(data.train)
    before = flow.bits_per_dim(data.test)
    fit(flow, data.train, epochs=2, batch_size=128, lr=2e-3, progress=False)
    after = flow.bits_per_dim(data.test)
    assert after < before and after < math.log2(17)  # beats uniform pixels
    s = flow.sample(10)
    assert s.shape == (10, 64)
    assert torch.allclose(s * 16, torch.round(s * 16)) and s.min() >= 0 and s.max() <= 1


def test_dequantized_rejects_too_few_levels():
    with pytest.raises(ValueError, match="num_levels"):
        Dequantized(dist.Uniform(0.0, 1.0), 1)


# ----------------------------------------------------------------------------- bad input
def test_bad_arguments_raise_value_errors():
    assert canonical_transform("spline") == "spline_coupling"
    with pytest.raises(ValueError, match="transform must be one of"):
        FlowDensity(2, "glow")
    with pytest.raises(ValueError, match="depth"):
        FlowDensity(2, "maf", depth=0)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        FlowDensity(1, "affine_coupling")
    with pytest.raises(ValueError, match="permutation"):
        FlowDensity(2, "maf", permutation="shuffle")
    with pytest.raises(ValueError, match=r"at least the data dimension \(16\)"):
        FlowDensity(16, "spline_autoregressive", hidden=(8,))
    with pytest.raises(ValueError, match="spline order"):
        FlowDensity(2, "spline", order="cubic")
    flow = FlowDensity(2, "maf", depth=1)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        fit(flow, torch.randn(10, 3), steps=1, progress=False)
    img = FlowDensity(4, "maf", depth=1, num_levels=17)
    with pytest.raises(ValueError):
        img.check_data(torch.full((3, 4), 2.0))
    with pytest.raises(ValueError, match="num_samples"):
        flow.sample(0)


def test_cli_fit_flow_on_moons_then_resume(tmp_path):
    """`pyro-gen fit flow`: run folder with the density figure and the references; --resume
    continues from the checkpoint to the same parameters as one uninterrupted run."""
    import json

    from pyro_gen.cli import main
    from pyro_gen.inference import load_checkpoint

    # a constant learning rate: the family's cosine schedule depends on the total step count
    common = ["fit", "flow", "--data", "moons", "--depth", "2", "--hidden", "16", "--no-progress"]
    common += ["--lr-schedule", "constant"]
    out, ref = tmp_path / "run", tmp_path / "ref"
    assert main([*common, "--steps", "20", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "density.png").is_file() and metrics["steps"] == 20
    assert metrics["reference_gaussian"] < metrics["reference_gmm50"]
    assert metrics["test_log_likelihood"] > metrics["reference_gaussian"] - 1.0
    assert main([*common, "--steps", "35", "--out", str(out), "--resume"]) == 0
    assert main([*common, "--steps", "35", "--out", str(ref)]) == 0
    a = load_checkpoint(out / "checkpoint.pt")
    b = load_checkpoint(ref / "checkpoint.pt")
    assert a["loop"]["step"] == b["loop"]["step"] == 35
    for key, value in b["module_state"].items():
        assert torch.equal(a["module_state"][key], value), key
    # --steps and --epochs together are refused with one line, before anything is written
    assert main([*common, "--steps", "5", "--epochs", "1", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_spline_coupling_both_halves_starts_at_identity_on_the_conditioning_half():
    with _Float64():
        torch.manual_seed(0)
        module, _ = make_transform("spline_coupling", 4, hidden=(8,), spline_both_halves=True)
        x = 1.5 * torch.randn(6, 4)
        y = _fresh(module, x)
        assert torch.allclose(y[:, :2], x[:, :2], atol=1e-2)  # identity up to Pyro's min slopes
        assert not torch.allclose(y[:, 2:], x[:, 2:], atol=1e-2)
        with torch.no_grad():
            for p in module.parameters():
                p.add_(0.3 * torch.randn_like(p))
        y = _fresh(module, x)
        assert not torch.allclose(y[:, :2], x[:, :2], atol=1e-2)  # the half is now transformed
        expected = _jacobian_logdet(lambda v: _fresh(module, v), x)
        assert torch.allclose(module.log_abs_det_jacobian(x, y).reshape(-1), expected, atol=1e-7)
        module.clear_cache()
        assert torch.allclose(module.inv(y.detach().clone()), x, atol=1e-7)


@pytest.mark.parametrize("name", ["maf", "affine_coupling"])
def test_identity_init_starts_at_the_base_density(name):
    torch.manual_seed(0)
    x = torch.randn(50, 3) * torch.tensor([2.0, 0.5, 1.0]) + 1.0
    flow = FlowDensity(3, name, depth=3, hidden=(16,), identity_init=True).init_from_data(x)
    flow.eval()
    z = (x - flow.loc) / flow.scale  # only the standardization is left
    expected = dist.Normal(0.0, 1.0).log_prob(z).sum(-1) - flow.scale.log().sum()
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-5)
    with pytest.raises(ValueError, match="identity_init"):
        FlowDensity(2, "spline", depth=1, identity_init=True)


# --------------------------------------------------------------------------- batch norm statistics
def _mixture(n: int, seed: int) -> torch.Tensor:
    """A 2-D mixture of three well-separated blobs of unequal weight, so that the statistics of
    small minibatches scatter widely around those of the whole set."""
    g = torch.Generator().manual_seed(seed)
    which = torch.multinomial(torch.tensor([0.6, 0.3, 0.1]), n, replacement=True, generator=g)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 1.5], [0.0, -2.5]])
    return centres[which] + 0.4 * torch.randn(n, 2, generator=g)


def _copy(flow: FlowDensity) -> FlowDensity:
    """A flow with the same configuration and state (weights, statistics), in eval mode."""
    other = FlowDensity(**flow.config)
    other.load_state_dict(flow.state_dict())
    return other.eval()


def _inputs_of_batch_norm_layers(flow: FlowDensity, x: torch.Tensor) -> list[torch.Tensor]:
    """The values reaching each BatchNorm from the data side, the whole of ``x`` in one eval-mode pass."""
    import pyro.distributions.transforms as T

    flow.eval()
    flow.clear_cache()
    for t in reversed(flow.post_transforms()):
        x = t.inv(x)
    seen = []
    for t in reversed(flow._generative):
        if isinstance(t, T.BatchNorm):
            seen.append(x.clone())
        x = t.inv(x)
    flow.clear_cache()
    return seen


@pytest.mark.parametrize(("name", "bn_last"), [("maf", False), ("maf", True), ("masked_coupling", True)])
def test_full_batch_norm_statistics_are_those_of_each_layers_input_and_normalize(name, bn_last, float64):
    """After a short training on small minibatches, set_batch_norm_statistics gives every layer
    the mean/variance of its input over the training set (inputs through the layers below in
    eval mode); eval mode then is a normalized density that agrees with train mode on one batch
    holding the whole training set, where the running averages training left do not."""
    from pyro_gen.models.flows import batch_norm_layers, set_batch_norm_statistics

    torch.manual_seed(0)
    x = _mixture(600, seed=1)
    flow = FlowDensity(2, name, depth=4, hidden=(16, 16), batch_norm=True, bn_last=bn_last)
    flow.init_from_data(x)
    # estimator="reparam": the compiled default falls over on this float64 flow (tracing raises a
    # NotImplementedError without a message, which the fallback cannot format)
    fit(flow, x, steps=150, batch_size=8, lr=5e-3, progress=False, estimator="reparam")
    flow.eval()
    running = _copy(flow)
    layers = batch_norm_layers(flow)
    assert len(layers) == 3 + bn_last and flow.bn_stats == "running"
    summary = set_batch_norm_statistics(flow, x, batch_size=64)  # batches that do not divide 600
    assert summary["bn_layers"] == 3 + bn_last and summary["bn_points"] == 600 and flow.bn_stats == "full"
    # (a) each layer's statistics are the full-data mean/variance of its input, computed directly
    for bn, inp in zip(layers, _inputs_of_batch_norm_layers(flow, x), strict=True):
        assert torch.allclose(bn.moving_mean, inp.mean(0), atol=1e-10)
        assert torch.allclose(bn.moving_variance, inp.var(0), rtol=1e-9)
    # the running averages were measurably elsewhere (small, noisy batches)
    assert summary["bn_max_log_variance_ratio"] > 0.02
    # (b) a normalized density in eval mode ...
    with torch.no_grad():
        _, _, logp = log_density_grid(flow.log_prob, (-5.0, 5.0, -5.5, 4.5), num=300)
    mass = math.exp(float(torch.logsumexp(torch.as_tensor(logp).reshape(-1), 0))) * (10 / 300) ** 2
    assert mass == pytest.approx(1.0, abs=0.01)
    # ... equal to train mode's on one batch holding the whole training set
    trained = _copy(flow).train()
    with torch.no_grad():
        train_mode = trained.log_prob(x)
        full = flow.log_prob(x)
        old = running.log_prob(x)
    assert torch.allclose(full, train_mode, atol=1e-8)
    # (c) the running averages give a measurably different value there
    gap = float((old - train_mode).abs().mean())
    assert gap > 1e-3, gap
    assert abs(float(old.mean() - train_mode.mean())) > 1e-3


def test_batch_norm_statistics_follow_the_layers_in_order_and_need_batch_norm(float64):
    """Setting the layers from the base side (the wrong order) or with the layers below in train
    mode would give other statistics: the function's result depends only on the weights, not
    on the running averages it replaces, and a flow without batch norm is left unchanged."""
    from pyro_gen.models.flows import batch_norm_layers, set_batch_norm_statistics

    torch.manual_seed(2)
    x = _mixture(300, seed=3)
    flow = FlowDensity(2, "maf", depth=3, hidden=(8, 8), batch_norm=True).init_from_data(x)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    set_batch_norm_statistics(flow, x)
    first = [(bn.moving_mean.clone(), bn.moving_variance.clone()) for bn in batch_norm_layers(flow)]
    for bn in batch_norm_layers(flow):  # scramble the statistics: the pass must not depend on them
        bn.moving_mean.add_(3.0)
        bn.moving_variance.mul_(7.0)
    set_batch_norm_statistics(flow, x, batch_size=7)
    for (mean, var), bn in zip(first, batch_norm_layers(flow), strict=True):
        assert torch.allclose(bn.moving_mean, mean, atol=1e-10)
        assert torch.allclose(bn.moving_variance, var, rtol=1e-9)
    plain = FlowDensity(2, "maf", depth=2, hidden=(8,))
    assert set_batch_norm_statistics(plain, x) == {"bn_layers": 0}
    with pytest.raises(ValueError, match="shape"):
        set_batch_norm_statistics(flow, x[:, :1])


def test_image_flow_batch_norm_statistics_use_fixed_dequantization():
    """Image flows: the statistics are of dequantized pixels (noise from the seed) in logit space."""
    from pyro_gen.models.flows import batch_norm_layers, set_batch_norm_statistics

    torch.manual_seed(0)
    x = torch.randint(0, 17, (200, 6)).float() / 16
    x[:, 0] = 0.0  # a constant pixel: its logit-space spread comes from the noise alone
    flow = FlowDensity(6, "maf", depth=2, hidden=(12,), batch_norm=True, num_levels=17).init_from_data(x)
    set_batch_norm_statistics(flow, x, seed=5)
    bn = batch_norm_layers(flow)[0]
    a = (bn.moving_mean.clone(), bn.moving_variance.clone())
    set_batch_norm_statistics(flow, x, seed=5)
    assert torch.equal(bn.moving_mean, a[0]) and torch.equal(bn.moving_variance, a[1])
    set_batch_norm_statistics(flow, x, seed=6)
    assert not torch.equal(bn.moving_variance, a[1])
    assert bool(torch.isfinite(flow.log_likelihood(x[:20], num_samples=2)).all())


def test_cli_fit_flow_with_batch_norm_records_the_statistics_and_evaluate_agrees(tmp_path):
    """`--batch-norm` evaluates with full training-set statistics by default and records the
    running-average numbers beside them; `pyro-gen evaluate RUN` (from the checkpoint, which
    holds the running averages) sets them again and gives the same numbers; `--bn-stats
    running` keeps the running averages."""
    import json

    from pyro_gen.cli import main

    common = ["fit", "flow", "--data", "moons", "--transform", "maf", "--depth", "3", "--hidden", "16"]
    common += ["--batch-norm", "--steps", "30", "--batch-size", "16", "--no-progress"]
    out = tmp_path / "full"
    assert main([*common, "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["bn_stats"] == "full"
    assert m["bn_stats"] == "full" and m["bn_layers"] == 2 and m["bn_points"] > 0
    assert m["test_log_likelihood"] != m["test_log_likelihood_running_stats"]
    # a run folder loads with the full statistics again (its checkpoint holds the running ones)
    from pyro_gen.inference import load_checkpoint
    from pyro_gen.models.flows import batch_norm_layers
    from pyro_gen.runs import load_run

    model, _ = load_run(out)
    assert model.bn_stats == "full"
    reference = FlowDensity(**model.config)
    reference.load_state_dict(load_checkpoint(out / "checkpoint.pt")["module_state"])
    moved = [
        float((a.moving_variance / b.moving_variance).log().abs().max())
        for a, b in zip(batch_norm_layers(model), batch_norm_layers(reference), strict=True)
    ]
    assert max(moved) > 1e-3, moved
    assert main(["sample", str(out), "--num", "5", "--out", str(tmp_path / "s.npy")]) == 0
    assert main(["evaluate", str(out), "--no-progress"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["bn_stats"] == "full"
    assert again["test_log_likelihood"] == pytest.approx(m["test_log_likelihood"], abs=1e-6)
    run = tmp_path / "running"
    assert main([*common, "--bn-stats", "running", "--out", str(run)]) == 0
    r = json.loads((run / "metrics.json").read_text())
    assert r["bn_stats"] == "running" and "test_log_likelihood_running_stats" not in r
    assert r["test_log_likelihood"] == pytest.approx(m["test_log_likelihood_running_stats"], abs=1e-6)


# --------------------------------------------------------------------------- logit space (MAF's metric)
def test_dequantize_once_is_seeded_and_stays_in_each_pixels_bin():
    from pyro_gen.models.flows import dequantize_once

    x = torch.randint(0, 256, (50, 7)).float() / 255
    v = dequantize_once(x, 256, seed=3)
    assert v.dtype == torch.float64
    assert torch.equal(torch.floor(v * 256), torch.round(x.double() * 255))  # (k + u)/256, u in [0, 1)
    assert torch.equal(v, dequantize_once(x, 256, seed=3))
    assert not torch.equal(v, dequantize_once(x, 256, seed=4))
    # the noise is drawn for the whole array at once: rows do not depend on the rows after them
    assert torch.equal(dequantize_once(x[:10], 256, seed=3), v[:10])


def test_logit_pixels_and_their_jacobian_in_closed_form():
    from pyro_gen.models.flows import logit_log_jacobian, logit_pixels

    a = 1e-6
    v = torch.tensor([[0.0, 0.25, 0.5, 1.0 - 1e-9]], dtype=torch.float64)
    s = a + (1 - 2 * a) * v
    assert torch.allclose(logit_pixels(v, a), torch.log(s / (1 - s)), rtol=1e-6)
    assert float(logit_pixels(v, a)[0, 0]) == pytest.approx(math.log(a / (1 - a)), rel=1e-12)
    # symmetric to full precision near 1 (1 - s is formed without cancelling)
    assert torch.allclose(logit_pixels(1 - v, a), -logit_pixels(v, a), rtol=1e-12, atol=0)
    # the Jacobian is that of the map, by autograd
    vv = v.clone().requires_grad_(True)
    grad = torch.autograd.grad(logit_pixels(vv, a).sum(), vv)[0]
    assert float(logit_log_jacobian(v, a)[0]) == pytest.approx(float(grad.log().sum()), rel=1e-10)
    with pytest.raises(ValueError, match="alpha"):
        logit_pixels(v, 0.5)


def test_logit_space_log_likelihood_of_the_standardization_alone_is_a_gaussian_in_closed_form(float64):
    """An identity-initialised MAF is only its standardization: log p(y) is the Gaussian density
    of the standardized logits minus the log of the scales, nothing else (no - D log L, no
    Jacobian of the logit map)."""
    from pyro_gen.models.flows import dequantize_once, logit_pixels

    torch.manual_seed(0)
    x = torch.randint(0, 256, (40, 6)).double() / 255
    flow = FlowDensity(6, "maf", depth=2, hidden=(12,), identity_init=True, num_levels=256, alpha=1e-6)
    flow.init_from_data(x).eval()
    y = logit_pixels(dequantize_once(x, 256, seed=7), 1e-6)
    z = (y - flow.loc) / flow.scale
    expected = dist.Normal(0.0, 1.0).log_prob(z).sum(-1) - flow.scale.log().sum()
    got = flow.logit_log_likelihood(x, seed=7, batch_size=16)  # batches that do not divide 40
    assert torch.allclose(got, expected, atol=1e-9)
    with pytest.raises(ValueError, match="image flows"):
        FlowDensity(2, "maf", depth=1, hidden=(4,)).logit_log_likelihood(torch.zeros(3, 2))


@pytest.mark.parametrize("name", ["maf", "masked_coupling"])
def test_logit_space_log_likelihood_is_the_pixel_density_minus_the_logit_jacobian(name, float64):
    """log p(y) = log p_c(v) - sum log|dy/dv| for a trained-looking (perturbed) flow with batch norm."""
    from pyro_gen.models.flows import dequantize_once, logit_log_jacobian

    torch.manual_seed(1)
    x = torch.randint(0, 256, (30, 6)).double() / 255
    flow = FlowDensity(
        6, name, depth=3, hidden=(12,), batch_norm=True, bn_last=True, num_levels=256, alpha=1e-6
    )
    flow.init_from_data(x)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
    flow.eval()
    v = dequantize_once(x, 256, seed=2)
    expected = flow.log_prob(v) - logit_log_jacobian(v, 1e-6)
    assert torch.allclose(flow.logit_log_likelihood(x, seed=2), expected, atol=1e-6)


# --------------------------------------------------------------------------- the paper's MAF and RealNVP
def test_masked_coupling_alternates_its_mask_and_starts_at_identity(float64):
    torch.manual_seed(0)
    flow = FlowDensity(5, "masked_coupling", depth=2, hidden=(8, 8), permutation="none")
    first, second = flow.layers[0], flow.layers[1]
    assert first.mask.tolist() == [0, 1, 0, 1, 0] and second.mask.tolist() == [1, 0, 1, 0, 1]
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    u = torch.randn(4, 5)
    y = _fresh(first, u)
    assert torch.equal(y[:, 1::2], u[:, 1::2]) and not torch.allclose(y[:, ::2], u[:, ::2])
    # tanh hidden units in the scale network, relu in the shift network
    assert isinstance(first.scale_net[1], torch.nn.Tanh) and isinstance(first.shift_net[1], torch.nn.ReLU)
    plain = FlowDensity(5, "masked_coupling", depth=3, hidden=(8,), identity_init=True)
    plain.init_from_data(torch.randn(40, 5))
    z = torch.randn(7, 5)
    assert torch.allclose(plain.log_prob(z), dist.Normal(plain.loc, plain.scale).log_prob(z).sum(-1))


def test_sequential_made_order_is_autoregressive_in_coordinate_order(float64):
    torch.manual_seed(0)
    module, _ = make_transform("maf", 4, hidden=(8, 8), made_order="sequential")
    assert module.arn.permutation.tolist() == [0, 1, 2, 3]
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(4)
    jac = torch.autograd.functional.jacobian(lambda v: _fresh(module, v.unsqueeze(0)).squeeze(0), x)
    assert torch.equal(jac.triu(1), torch.zeros(4, 4)) and bool((jac.diagonal() != 0).all())
    with pytest.raises(ValueError, match="made_order"):
        make_transform("maf", 4, hidden=(8,), made_order="backwards")


def test_bn_last_puts_a_batch_norm_layer_after_every_block():
    import pyro.distributions.transforms as T

    from pyro_gen.models.flows import batch_norm_layers

    flow = FlowDensity(3, "maf", depth=3, hidden=(8,), batch_norm=True, bn_last=True)
    assert len(batch_norm_layers(flow)) == 3 and isinstance(flow._generative[0], T.BatchNorm)
    assert flow.config["bn_last"] is True
    assert len(batch_norm_layers(FlowDensity(3, "maf", depth=3, hidden=(8,), batch_norm=True))) == 2
    with pytest.raises(ValueError, match="needs batch_norm"):
        FlowDensity(3, "maf", depth=2, hidden=(8,), bn_last=True)


@pytest.mark.parametrize("hidden", [(9,), (9, 7)])
def test_maf_incremental_inverse_equals_pyros_inverse(hidden, float64):
    """The faster sequential inverse gives Pyro's values (and log-scales) for one or two hidden layers."""
    import pyro.distributions.transforms as T

    from pyro_gen.models.flows import IncrementalAffineAutoregressive

    torch.manual_seed(0)
    module, _ = make_transform("maf", 5, hidden=[max(h, 5) for h in hidden])
    assert isinstance(module, IncrementalAffineAutoregressive)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    y = torch.randn(2, 3, 5)  # batch dimensions are kept
    module.clear_cache()
    ours = module._inverse(y)
    ours_scale = module._cached_log_scale
    theirs = T.AffineAutoregressive._inverse(module, y)
    assert ours.shape == y.shape
    assert torch.allclose(ours, theirs, atol=1e-10)
    assert torch.allclose(ours_scale, module._cached_log_scale, atol=1e-10)
