"""Posterior-collapse remedies: KL weights and schedules, free bits, aggressive encoder updates."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from linear_gaussian import closed_form_elbo, linear_gaussian_vae

from pyro_gen.config import SVIConfig
from pyro_gen.data import load_digits
from pyro_gen.inference import fit, load_checkpoint
from pyro_gen.inference.annealing import (
    AGGRESSIVE_WINDOW,
    RemedyELBO,
    guide_parameters,
    kl_weight,
    mutual_information,
)
from pyro_gen.inference.estimators import SyncFreeTrace_ELBO
from pyro_gen.inference.svi import SVIObjective
from pyro_gen.models import VAE, data_plate
from pyro_gen.models.autoregressive import MADE


class Interrupt(Exception):
    pass


def _vae(seed=0, latent=3):
    torch.manual_seed(seed)
    return VAE(64, latent, hidden=(16,))


@pytest.fixture(scope="module")
def digits():
    return load_digits(binarize="dynamic")


def _loss_and_grads(elbo, vae, x, seed=3):
    pyro.set_rng_seed(seed)
    vae.zero_grad()
    loss = elbo.differentiable_loss(vae.model, vae.guide, x)
    loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in vae.parameters()]


def _closed_kl(vae, x):
    """KL(q(z|x) || N(0, I)) per row and per dimension (nats), differentiable."""
    loc, scale = vae.encoder(x)
    return 0.5 * (scale**2 + loc**2 - 1 - 2 * torch.log(scale))


# --------------------------------------------------------------------------- KL weight


def test_weight_one_equals_the_plain_elbo_loss_and_gradients():
    vae = _vae()
    x = torch.bernoulli(torch.full((20, 64), 0.3), generator=torch.Generator().manual_seed(0))
    want, want_g = _loss_and_grads(SyncFreeTrace_ELBO(), vae, x)
    got, got_g = _loss_and_grads(RemedyELBO(), vae, x)
    assert got == pytest.approx(want, rel=1e-6)
    for a, b in zip(got_g, want_g):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    # beta = 1 without a schedule switches no remedy on: the objective keeps its estimator
    obj = SVIObjective(vae, estimator="reparam", svi_config=SVIConfig(beta=1.0))
    assert obj.remedies is None and not isinstance(obj.elbo, RemedyELBO)


@pytest.mark.parametrize("particles", [3, 7])
def test_vectorized_particles_equal_the_vectorized_plain_elbo_and_the_loop_in_expectation(particles):
    vae = _vae(latent=2)
    x = torch.bernoulli(torch.full((12, 64), 0.4), generator=torch.Generator().manual_seed(1))
    plain = SyncFreeTrace_ELBO(num_particles=particles, vectorize_particles=True)
    want, want_g = _loss_and_grads(plain, vae, x)
    vec = RemedyELBO(num_particles=particles)
    assert vec.vectorize_particles
    got, got_g = _loss_and_grads(vec, vae, x)
    # the same draws (one particle plate): the particles' sum is divided by their number
    assert got == pytest.approx(want, rel=1e-6)
    for a, b in zip(got_g, want_g):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert float(vec.last_elbo) == pytest.approx(-want, rel=1e-6)
    # the loop draws other particles but estimates the same objective: the mean of many calls agree
    loop = RemedyELBO(num_particles=particles, vectorize_particles=False)
    assert not loop.vectorize_particles
    pyro.set_rng_seed(0)
    a = torch.tensor([vec.loss(vae.model, vae.guide, x) for _ in range(300)])
    b = torch.tensor([loop.loss(vae.model, vae.guide, x) for _ in range(300)])
    se = math.sqrt(float(a.var() + b.var()) / 300)
    assert abs(float(a.mean() - b.mean())) < 4 * se


@pytest.mark.parametrize("beta", [0.0, 0.3, 2.5])
def test_beta_scales_exactly_the_kl_part_on_the_linear_gaussian_model(beta):
    vae, W, b, s = linear_gaussian_vae(input_dim=4, latent_dim=2, noise=0.5)
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(1))
    plain = RemedyELBO(analytic_kl=True)
    weighted = RemedyELBO(analytic_kl=True)
    weighted.weight = beta
    l1, g1 = _loss_and_grads(plain, vae, x)
    lb, gb = _loss_and_grads(weighted, vae, x)
    # same draws: the difference is (beta - 1) times the closed-form KL, in value and gradient
    vae.zero_grad()
    kl = _closed_kl(vae, x).sum()
    kl.backward()
    g_kl = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in vae.parameters()]
    assert lb - l1 == pytest.approx((beta - 1) * float(kl.detach()), rel=1e-4, abs=1e-4)
    for a, c, k in zip(gb, g1, g_kl):
        assert torch.allclose(a - c, (beta - 1) * k, rtol=1e-4, atol=1e-4)
    # and against the closed form of the whole objective: -(E_q log p(x|z)) + beta KL
    loc, scale = vae.encode(x)
    kl_rows = 0.5 * (scale**2 + loc**2 - 1 - 2 * torch.log(scale)).sum(-1)

    expected_ll = closed_form_elbo(vae, x, W, b, s) + kl_rows
    many = RemedyELBO(num_particles=400, analytic_kl=True)
    many.weight = beta
    pyro.set_rng_seed(0)
    got = many.loss(vae.model, vae.guide, x)
    want = float(-(expected_ll - beta * kl_rows).sum())
    assert got == pytest.approx(want, rel=2e-3)


def test_linear_and_cyclical_weights_at_chosen_steps():
    lin = SVIConfig(beta=0.5, kl_warmup_steps=10)
    assert [kl_weight(lin, s, 100) for s in (0, 1, 5, 10, 50)] == [0.0, 0.05, 0.25, 0.5, 0.5]
    # Fu et al.: 100 steps, 4 cycles of 25, ramp over the first half of each
    cyc = SVIConfig(kl_schedule="cyclical", kl_cycles=4, kl_ramp=0.5)
    got = [kl_weight(cyc, s, 100) for s in (0, 5, 12, 13, 24, 25, 30, 99)]
    assert got == pytest.approx([0.0, 0.4, 0.96, 1.0, 1.0, 0.0, 0.4, 1.0])
    assert kl_weight(SVIConfig(beta=0.2), 7, 10) == 0.2


def test_history_and_step_info_record_the_weight_used(digits):
    cfg = SVIConfig(kl_schedule="cyclical", kl_cycles=2, kl_ramp=0.5)
    seen = []
    res = fit(
        _vae(),
        digits.train[:400],
        estimator="auto",
        steps=12,
        batch_size=50,
        log_every=1,
        progress=False,
        svi_config=cfg,
        callbacks=[lambda info: seen.append((info.step, info.kl_weight))],
    )
    want = [kl_weight(cfg, s, 12) for s in range(12)]
    assert [r["kl_weight"] for r in res.history] == pytest.approx(want)
    assert [w for _, w in seen] == pytest.approx(want)
    assert want[0] == 0.0 and max(want) == 1.0
    # the unweighted ELBO is what train_elbo reports; the weighted objective is beside it
    first = res.history[0]
    assert first["train_objective"] == pytest.approx(first["train_elbo"] + first["train_kl"], rel=1e-5)
    assert any("ran uncompiled" in n for n in res.notes) and any("Monte Carlo" in n for n in res.notes)


def test_evaluation_uses_the_unweighted_elbo(digits):
    x = digits.test[:60]
    vae = _vae()
    weighted = SVIObjective(vae, estimator="reparam", svi_config=SVIConfig(beta=0.1))
    plain = SVIObjective(vae, estimator="reparam")
    weighted.elbo.weight = 0.1
    torch.manual_seed(5)
    a = weighted.evaluate(x, None)["test_elbo"]
    torch.manual_seed(5)
    b = plain.evaluate(x, None)["test_elbo"]
    assert a == b


# --------------------------------------------------------------------------- free bits


@pytest.mark.parametrize("particles", [1, 4])
def test_free_bits_clamps_dimensions_below_the_floor_values_and_gradients(particles):
    vae, *_ = linear_gaussian_vae(input_dim=5, latent_dim=3, noise=0.5)
    with torch.no_grad():  # make the three dimensions' KLs clearly different
        vae.encoder.net[0].weight[:3] *= torch.tensor([[3.0], [0.3], [0.05]])
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(2))
    per_dim = _closed_kl(vae, x).mean(0).detach()
    floor = float(per_dim.sort().values[1])  # between the lowest and highest dimension
    floor = 0.5 * (float(per_dim.sort().values[0]) + floor)
    below = per_dim < floor
    assert below.any() and (~below).any()

    fb = RemedyELBO(particles, free_bits=floor)
    plain = RemedyELBO(particles, analytic_kl=True)
    l_fb, g_fb = _loss_and_grads(fb, vae, x)
    l_plain, g_plain = _loss_and_grads(plain, vae, x)
    assert fb.kl_methods == {"z": "closed form"}
    n = x.shape[0]
    want = l_plain - n * float(per_dim.sum()) + n * float(per_dim.clamp(min=floor).sum())
    assert l_fb == pytest.approx(want, rel=1e-5)
    # gradients: the clamped dimensions lose their KL gradient, the others keep it
    vae.zero_grad()
    (n * _closed_kl(vae, x).mean(0)[below].sum()).backward()
    g_below = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in vae.parameters()]
    for a, c, k in zip(g_fb, g_plain, g_below):
        assert torch.allclose(a, c - k, rtol=1e-4, atol=1e-5)
    # a floor under every dimension changes nothing
    low = RemedyELBO(particles, free_bits=float(per_dim.min()) * 0.5)
    assert _loss_and_grads(low, vae, x)[0] == pytest.approx(l_plain, rel=1e-6)


def test_free_bits_falls_back_to_monte_carlo_per_dimension_with_two_latent_layers(digits):
    torch.manual_seed(0)
    vae = VAE(64, 2, hidden=(16,), lower_latents=(3,), between_hidden=(8,))
    elbo = RemedyELBO(free_bits=0.1)
    elbo.loss(vae.model, vae.guide, digits.test[:10])
    assert elbo.kl_methods == {"z1": "Monte Carlo", "z2": "Monte Carlo"}


# --------------------------------------------------------------------------- aggressive


class Recording(SVIObjective):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.snapshots = []

    def encoder_updates(self, ctx, batch, idx):
        before = {k: v.detach().clone() for k, v in self.module.named_parameters()}
        n = super().encoder_updates(ctx, batch, idx)
        after = {k: v.detach().clone() for k, v in self.module.named_parameters()}
        self.snapshots.append((before, after, n))
        return n


def test_aggressive_inner_loop_changes_only_guide_parameters(digits):
    from pyro_gen.config import TrainConfig
    from pyro_gen.inference.engine import train

    vae = _vae()
    cfg = SVIConfig(aggressive_encoder=True, aggressive_inner_steps=40, aggressive_steps=3)
    obj = Recording(vae, estimator="reparam", svi_config=cfg)
    res = train(obj, digits.train[:600], TrainConfig(steps=5, batch_size=50, log_every=1, progress=False))
    assert len(obj.snapshots) == 3  # the phase lasts three model updates, then plain training
    for before, after, n in obj.snapshots:
        assert 1 <= n <= 40 and (n % AGGRESSIVE_WINDOW == 0 or n == 40)
        for k in before:
            changed = not torch.equal(before[k], after[k])
            assert changed == k.startswith("encoder."), k
    # the model update after each inner loop leaves the guide's parameters alone
    enc = {k for k in obj.snapshots[0][1] if k.startswith("encoder.")}
    assert {id(p) for p in obj._guide_params} == {id(p) for k, p in vae.named_parameters() if k in enc}
    for (_, after, _), (before_next, _, _) in zip(obj.snapshots, obj.snapshots[1:]):
        for k in after:
            assert torch.equal(after[k], before_next[k]) == k.startswith("encoder."), k
    assert [r["aggressive"] for r in res.history] == [True, True, False, False, False]
    assert res.history[0]["inner_steps"] == obj.snapshots[0][2]


def test_guide_parameters_are_the_encoders():
    vae = _vae()
    x = torch.rand(8, 64)
    found = {id(p) for p in guide_parameters(vae.guide, x, list(vae.parameters()))}
    assert found == {id(p) for p in vae.encoder.parameters()}


def test_mutual_information_of_a_gaussian_channel():
    # x ~ N(0, 1), q(z | x) = N(x, s^2): I(x; z) = 0.5 log(1 + 1 / s^2)
    x = torch.randn(2000, 1, generator=torch.Generator().manual_seed(123))

    def guide(data, s=1.0, w=1.0):
        with data_plate(data):
            pyro.sample("z", dist.Normal(w * data, s).to_event(1))

    got = mutual_information(guide, x)
    assert got == pytest.approx(0.5 * math.log(2.0), abs=0.03)
    assert abs(mutual_information(lambda d: guide(d, w=0.0), x)) < 1e-9  # z ignores x
    assert mutual_information(lambda d: guide(d, s=1e-3), x[:50]) <= math.log(50) + 1e-6


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize(
    "cfg",
    [
        SVIConfig(kl_schedule="cyclical", kl_cycles=3, free_bits=0.05),
        SVIConfig(kl_warmup_steps=9, aggressive_encoder=True, aggressive_inner_steps=20),
    ],
    ids=["cyclical-free-bits", "warmup-aggressive"],
)
def test_resume_continues_the_schedule(cfg, digits, tmp_path):
    # 600 rows in batches of 50: 12 steps an epoch; the aggressive phase checks I(x; z) at 12
    kw = dict(
        estimator="reparam",
        steps=16,
        batch_size=50,
        log_every=2,
        transform=digits.batch_transform,
        test_data=digits.test[:40],
        progress=False,
        seed=3,
        svi_config=cfg,
    )
    ref_model = _vae(0)
    ref = fit(ref_model, digits.train[:600], **kw)

    def stop(info):
        if info.step == 7:
            raise Interrupt

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(Interrupt):
        fit(_vae(0), digits.train[:600], checkpoint=ckpt, checkpoint_every=4, callbacks=[stop], **kw)
    assert load_checkpoint(ckpt)["loop"]["step"] == 4
    model = _vae(1)
    res = fit(model, digits.train[:600], checkpoint=ckpt, resume=ckpt, **kw)
    for key in ("kl_weight", "train_elbo", "test_elbo"):
        assert [r[key] for r in res.history] == [r[key] for r in ref.history], key
    for (name, a), b in zip(ref_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name


# --------------------------------------------------------------------------- refusals


def test_remedies_refused_where_they_cannot_be_honoured(digits):
    with pytest.raises(ValueError, match="exact only for the reparameterized"):
        SVIObjective(_vae(), estimator="iwae:3", svi_config=SVIConfig(beta=0.5))
    with pytest.raises(ValueError, match="exact only for the reparameterized"):
        SVIConfig(estimator="score", free_bits=0.5)
    with pytest.raises(ValueError, match="--kl-warmup-steps goes with"):
        SVIConfig(kl_schedule="cyclical", kl_warmup_steps=5)
    with pytest.raises(ValueError, match="--free-bits must be a positive"):
        SVIConfig(free_bits=-1.0)
    with pytest.raises(ValueError, match="--aggressive-steps goes with"):
        SVIConfig(aggressive_steps=3)
    with pytest.raises(ValueError, match="differentiable_loss"):
        SVIObjective(_vae(), estimator="tracegraph", svi_config=SVIConfig(aggressive_encoder=True))
    with pytest.raises(ValueError, match="guide has none"):  # latent sites, but no guide parameters

        def model(x):
            logits = pyro.param("logits", torch.zeros(64))
            with data_plate(x):
                z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 3), 1.0).to_event(1))
                pyro.sample(
                    "x", dist.Bernoulli(logits=logits + 0 * z.sum(-1, keepdim=True)).to_event(1), obs=x
                )

        def fixed_guide(x):
            with data_plate(x):
                pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 3), 1.0).to_event(1))

        pyro.clear_param_store()
        fit(
            model,
            digits.train[:100],
            guide=fixed_guide,
            estimator="reparam",
            steps=1,
            batch_size=50,
            progress=False,
            svi_config=SVIConfig(aggressive_encoder=True),
        )
    made = MADE(64, hidden=(16,))
    with pytest.raises(ValueError, match="this model has none"):
        fit(
            made,
            digits.train[:100],
            steps=1,
            batch_size=50,
            progress=False,
            svi_config=SVIConfig(free_bits=0.5),
        )
    with pytest.raises(ValueError, match="this model has none"):
        fit(
            made,
            digits.train[:100],
            steps=1,
            batch_size=50,
            progress=False,
            svi_config=SVIConfig(aggressive_encoder=True),
        )


def test_a_score_function_site_is_refused():
    from pyro.distributions.testing.fakes import NonreparameterizedNormal

    vae = _vae()

    def guide(x):
        with data_plate(x):
            loc, scale = vae.encoder(x)
            pyro.sample("z", NonreparameterizedNormal(loc, scale).to_event(1))

    with pytest.raises(ValueError, match="latent site 'z' is not reparameterized"):
        RemedyELBO().loss(vae.model, guide, torch.rand(4, 64))


def test_families_without_latents_refuse_the_flags():
    from pyro_gen.runs import plan_run

    with pytest.raises(ValueError, match="--free-bits: the made family has no trainer settings"):
        plan_run("made", trainer={"free_bits": 0.5})
    with pytest.raises(ValueError, match="--beta"):
        plan_run("gan", trainer={"beta": 0.5})


def test_command_line_remedies_reach_training(tmp_path):
    import csv

    from pyro_gen.cli import main

    out = tmp_path / "run"
    argv = ["fit", "vae", "--latent-dim", "2", "--hidden", "8", "--steps", "8", "--log-every", "2"]
    argv += ["--beta", "0.5", "--kl-warmup-steps", "4", "--k", "2", "--eval-points", "10"]
    assert main([*argv, "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    weights = [float(r["kl_weight"]) for r in rows]
    assert weights[-1] == pytest.approx(0.5)  # the warm-up ends at beta, not at 1
    assert weights[0] < 0.5 and weights == sorted(weights)
