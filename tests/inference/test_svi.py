import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import constraints

from pyro_gen.data import load_digits
from pyro_gen.inference import TrainingDivergedError, fit, load_checkpoint
from pyro_gen.models import VAE, data_plate


def _digits_vae(seed=0):
    torch.manual_seed(seed)
    return VAE(64, 4, hidden=(32,))


def _params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_conjugate_normal_posterior_recovered():
    # mu ~ N(0, 1), x_i ~ N(mu, 1): posterior N(sum x / (n + 1), 1 / (n + 1))
    x = torch.randn(40, 1) + 2.0

    def model(data):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with data_plate(data):
            pyro.sample("x", dist.Normal(mu.unsqueeze(-1), 1.0).to_event(1), obs=data)

    def guide(data):
        loc = pyro.param("loc", torch.tensor(0.0))
        scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale))

    # minibatches of 10 out of 40: the data plate rescales, the global prior counts once
    fit(
        model,
        x,
        guide=guide,
        estimator="analytic-kl",
        batch_size=10,
        steps=3000,
        lr=0.02,
        lr_schedule="cosine",
        progress=False,
        num_particles=4,
    )
    post_mean, post_sd = float(x.sum() / 41), (1 / 41) ** 0.5
    assert abs(pyro.param("loc").item() - post_mean) < 0.05
    assert abs(pyro.param("scale").item() - post_sd) < 0.03


def test_minibatch_elbo_is_unbiased_for_full_data():
    data = load_digits(binarize="static")
    vae = _digits_vae()
    elbo = pyro.infer.Trace_ELBO()
    from pyro_gen.models import minibatch

    x, n = data.train, data.train.shape[0]
    full = torch.tensor([elbo.loss(vae.model, vae.guide, x) for _ in range(40)])
    g = torch.Generator().manual_seed(0)
    mini = []
    for _ in range(600):
        idx = torch.randperm(n, generator=g)[:64]
        with minibatch(n, idx):
            mini.append(elbo.loss(vae.model, vae.guide, x[idx]))
    mini = torch.tensor(mini)
    se = (mini.var() / len(mini) + full.var() / len(full)).sqrt()
    assert abs(mini.mean() - full.mean()) < 4 * se
    # without the plate's N/B rescaling the minibatch loss would be ~n/64 times smaller
    assert mini.mean() / full.mean() > 0.9


def test_resume_equals_uninterrupted(tmp_path):
    data = load_digits(binarize="dynamic")
    kw = dict(
        steps=24,
        batch_size=50,
        lr=3e-3,
        lr_schedule="cosine",
        transform=data.batch_transform,
        test_data=data.test,
        log_every=4,
        progress=False,
        seed=3,
    )
    vae_a = _digits_vae()
    ref = fit(vae_a, data.train, **kw)

    class Interrupt(Exception):
        pass

    def stop_at_15(info):
        if info.step == 15:
            raise Interrupt

    ckpt = tmp_path / "ckpt.pt"
    vae_b = _digits_vae()
    with pytest.raises(Interrupt):
        fit(vae_b, data.train, checkpoint=ckpt, checkpoint_every=10, callbacks=[stop_at_15], **kw)
    assert load_checkpoint(ckpt)["loop"]["step"] == 10
    vae_c = _digits_vae(seed=99)  # different init: everything must come from the checkpoint
    res = fit(vae_c, data.train, resume=ckpt, checkpoint=ckpt, **kw)
    for k, v in _params(vae_a).items():
        assert torch.equal(v, _params(vae_c)[k]), k
    assert [r["train_elbo"] for r in res.history] == [r["train_elbo"] for r in ref.history]
    assert [r["test_elbo"] for r in res.history] == [r["test_elbo"] for r in ref.history]


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    data = load_digits()
    vae = _digits_vae()
    ckpt = tmp_path / "ckpt.pt"

    def poison(info):
        if info.step == 7:
            with torch.no_grad():
                vae.decoder[-1].bias.fill_(float("nan"))

    with pytest.raises(TrainingDivergedError, match="step 8.*ckpt.pt"):
        fit(
            vae,
            data.train,
            steps=20,
            checkpoint=ckpt,
            checkpoint_every=3,
            callbacks=[poison],
            progress=False,
            batch_size=32,
        )
    state = load_checkpoint(ckpt)
    assert state["loop"]["step"] == 6
    assert all(torch.isfinite(v).all() for v in state["module_state"].values())


def test_corrupt_checkpoint_rejected_without_overwrite(tmp_path):
    data = load_digits()
    good = tmp_path / "good.pt"
    fit(_digits_vae(), data.train, steps=3, checkpoint=good, progress=False)
    before = good.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(before[: len(before) // 2])
    with pytest.raises(ValueError, match="bad.pt.*corrupt"):
        fit(_digits_vae(), data.train, steps=6, resume=bad, checkpoint=good, progress=False)
    assert good.read_bytes() == before
    assert bad.read_bytes() == before[: len(before) // 2]
    torch.save({"hello": 1}, bad)
    with pytest.raises(ValueError, match="not a pyro-gen checkpoint"):
        load_checkpoint(bad)


@pytest.mark.parametrize("estimator", ["tracegraph", "jit", "analytic-kl", "reparam:3"])
def test_every_estimator_path_trains_the_networks(estimator):
    data = load_digits(binarize="static")
    vae = _digits_vae()
    before = _params(vae)
    res = fit(vae, data.train, estimator=estimator, steps=60, lr=3e-3, log_every=10, progress=False)
    after = _params(vae)
    assert not torch.equal(before["encoder.net.0.weight"], after["encoder.net.0.weight"])
    assert not torch.equal(before["decoder.2.weight"], after["decoder.2.weight"])
    assert res.history[-1]["train_elbo"] > res.history[0]["train_elbo"]


def test_fit_rejects_bad_arguments():
    data = load_digits().train
    vae = _digits_vae()
    with pytest.raises(ValueError, match="exactly one of epochs= or steps="):
        fit(vae, data, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        fit(vae, data, steps=1, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="unknown estimator"):
        fit(vae, data, steps=1, estimator="magic", progress=False)
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        fit(vae, data * 2, steps=1, progress=False)
    with pytest.raises(ValueError, match="test_data.*NaN"):
        fit(vae, data, steps=1, test_data=torch.full((2, 64), float("nan")), progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        fit(vae, data, steps=1, optimizer="lbfgs2", progress=False)


def _normal_pair(nan_from_call: int | None = None):
    """Model/guide of mu ~ N(0, 1), x ~ N(mu, 1); the model's loss turns NaN from a given call."""
    calls = {"n": 0}

    def model(data):
        calls["n"] += 1
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        if nan_from_call is not None and calls["n"] >= nan_from_call:
            pyro.factor("poison", torch.tensor(float("nan")))
        with data_plate(data):
            pyro.sample("x", dist.Normal(mu.unsqueeze(-1), 1.0).to_event(1), obs=data)

    def guide(data):
        loc = pyro.param("loc", torch.tensor(0.0))
        scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale))

    return model, guide


def test_deferred_loss_sync_gives_the_same_run():
    x = torch.randn(64, 1) + 1.0
    runs = []
    for sync_every in (1, 7):
        pyro.clear_param_store()
        model, guide = _normal_pair()
        res = fit(
            model,
            x,
            guide=guide,
            steps=40,
            batch_size=16,
            log_every=10,
            sync_every=sync_every,
            progress=False,
            lr=0.05,
        )
        runs.append(([h["train_elbo"] for h in res.history], float(pyro.param("loc").detach())))
    assert runs[0][1] == runs[1][1]
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-6)


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_deferred_loss_sync_reports_the_window_and_keeps_the_last_clean_checkpoint(tmp_path):
    x = torch.randn(64, 1)
    model, guide = _normal_pair(nan_from_call=8)  # NaN from step 8; reads at 3, 5, 6 (ckpt), 9
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(TrainingDivergedError, match="between steps 7 and 9.*ckpt.pt"):
        fit(
            model,
            x,
            guide=guide,
            steps=20,
            batch_size=16,
            checkpoint=ckpt,
            checkpoint_every=3,
            sync_every=5,
            log_every=100,
            progress=False,
        )
    state = load_checkpoint(ckpt)
    assert state["loop"]["step"] == 6
    assert all(torch.isfinite(v).all() for v in state["param_store"]["params"].values())
    with pytest.raises(ValueError, match="sync_every"):
        fit(model, x, guide=guide, steps=2, sync_every=0, progress=False)
