"""The GAN as a Pyro program: traces, conditioning, Predictive, networks, packing; the gan family."""

import json

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Predictive
from torch import nn

from pyro_gen.models.base import minibatch
from pyro_gen.models.gan import (
    GAN,
    ConvDiscriminator,
    ConvGenerator,
    mlp_discriminator,
    mlp_generator,
    pack_samples,
)


def test_model_trace_has_latent_and_deterministic_sites():
    gan = GAN.for_data(2, hidden=(8,))
    tr = poutine.trace(gan.model).get_trace(num_samples=7)
    z, x = tr.nodes["z"], tr.nodes["x"]
    assert z["value"].shape == (7, 2) and not z["is_observed"]
    assert x["value"].shape == (7, 2)
    torch.testing.assert_close(x["value"], gan.generate(z["value"]))
    # z ~ N(0, I): the trace's log-density is the standard normal's
    tr.compute_log_prob()
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z["value"]).sum(-1)
    torch.testing.assert_close(z["log_prob"], expected)
    assert [f.name for f in z["cond_indep_stack"]] == ["data"]


def test_conditioning_on_z_fixes_x_and_predictive_samples():
    gan = GAN.for_data(2, hidden=(8,))
    z = torch.randn(5, 2)
    x = pyro.condition(gan.model, data={"z": z})(num_samples=5)
    torch.testing.assert_close(x, gan.generate(z))
    draws = Predictive(gan.model, num_samples=3, return_sites=["x", "z"])(num_samples=4)
    assert draws["x"].shape == (3, 4, 2) and draws["z"].shape == (3, 4, 2)
    torch.testing.assert_close(draws["x"][1], gan.generate(draws["z"][1]).detach())


def test_model_uses_the_minibatch_data_plate():
    gan = GAN.for_data(2, hidden=(8,))
    x = torch.randn(10, 2)
    with minibatch(1000, torch.arange(10)):
        tr = poutine.trace(gan.model).get_trace(x)
    assert tr.nodes["z"]["scale"] == pytest.approx(100.0)
    assert tr.nodes["z"]["value"].shape == (10, 2)


def test_sample_shapes_and_ranges():
    vec = GAN.for_data(5)
    assert vec.latent_dim == 32 and vec.sample(6).shape == (6, 5)
    assert GAN.for_data(2).latent_dim == 2
    digits = GAN.for_data(64, (8, 8))
    assert isinstance(digits.generator, ConvGenerator)
    s = digits.sample(9)
    assert s.shape == (9, 64) and float(s.min()) >= 0 and float(s.max()) <= 1
    mnist = GAN.for_data(784, (28, 28), pack=2, width=8)
    assert mnist.sample(4).shape == (4, 784)
    assert mnist.discriminate(torch.rand(6, 784)).shape == (3,)
    mlp_img = GAN.for_data(64, (8, 8), arch="mlp", hidden=(16,))
    assert mlp_img.sample(3).shape == (3, 64) and float(mlp_img.sample(50).max()) <= 1


def test_sample_restores_training_mode_and_uses_batchnorm_statistics():
    gan = GAN.for_data(64, (8, 8), width=4)
    gan.train()
    gan.sample(3)
    assert gan.training
    # eval mode: a sample does not depend on the other samples of its batch
    torch.manual_seed(1)
    a = gan.sample(4)
    torch.manual_seed(1)
    b = gan.sample(8)
    torch.testing.assert_close(a, b[:4])


def test_conv_networks_shapes():
    g = ConvGenerator(3, 28, width=4)
    assert g(torch.randn(2, 3)).shape == (2, 784)
    d = ConvDiscriminator(8, width=4, pack=3)
    assert d(torch.rand(2, 3 * 64)).shape == (2, 1)


def test_packing_concatenates_consecutive_samples():
    x = torch.arange(12.0).reshape(6, 2)
    p = pack_samples(x, 3)
    torch.testing.assert_close(p, torch.tensor([[0.0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]))
    gan = GAN.for_data(2, hidden=(4,), pack=3)
    torch.testing.assert_close(gan.discriminate(x), gan.discriminator(p).squeeze(-1))
    with pytest.raises(ValueError, match="pack=4"):
        pack_samples(x, 4)


def test_standardize_maps_generator_and_critic_coordinates():
    data = torch.tensor([10.0, -3.0]) + torch.tensor([4.0, 0.5]) * torch.randn(500, 2)
    gan = GAN.for_data(2, hidden=(8,), pack=2).standardize(data)
    torch.testing.assert_close(gan.data_loc, data.mean(0))
    z = torch.randn(4, 2)
    torch.testing.assert_close(gan.generate(z), data.mean(0) + data.std(0) * gan.generator(z))
    x = torch.randn(4, 2)
    standardized = pack_samples((x - data.mean(0)) / data.std(0), 2)
    torch.testing.assert_close(gan.discriminate(x), gan.discriminator(standardized).squeeze(-1))
    # buffers travel with the state dict
    other = GAN.for_data(2, hidden=(8,), pack=2)
    other.load_state_dict(gan.state_dict())
    torch.testing.assert_close(other.generate(z), gan.generate(z))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: GAN.for_data(0), "data_dim"),
        (lambda: GAN.for_data(2, latent_dim=0), "latent_dim"),
        (lambda: GAN.for_data(2, pack=0), "pack"),
        (lambda: GAN.for_data(100, (10, 10), arch="conv"), "8x8 and 28x28"),
        (lambda: GAN.for_data(12, (3, 4), arch="conv"), "square"),
        (lambda: GAN.for_data(2, arch="resnet"), "arch"),
        (lambda: mlp_generator(2, 2, output="tanh"), "output"),
        (lambda: GAN.for_data(2).sample(0), "num_samples"),
        (lambda: GAN.for_data(2).standardize(torch.zeros(5, 3)), r"\(N, 2\)"),
        (lambda: GAN(2, 2, nn.Linear(2, 2), mlp_discriminator(2), pack=-1), "pack"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- the family


def test_family_fit_writes_run_folder_and_sample_round_trips(tmp_path):
    from pyro_gen.runs import load_run, run_fit, sample_run

    out = tmp_path / "run"
    metrics = run_fit(
        "gan",
        "ring",
        out=out,
        options={"loss": "hinge", "pack": 2, "hidden": "16,16"},
        steps=20,
        progress=False,
    )
    for key in ("modes_captured", "high_quality_share", "kl_to_uniform", "mode_counts"):
        assert key in metrics
    # the within-mode spread and the MMD^2 against the test split, with its data-vs-data floor
    for key in ("within_mode_spread", "within_mode_spread_min", "within_mode_spread_max", "mmd2"):
        assert key in metrics
    assert metrics["mmd_bandwidth"] == 0.01 and abs(metrics["mmd2_floor"]) < 1e-3
    assert metrics["mmd2"] > metrics["mmd2_floor"]  # 20 steps: far from the data
    assert "within_mode_spread" in (out / "history.csv").read_text().splitlines()[0]
    assert metrics["num_modes"] == 8 and metrics["num_samples"] == 2500
    assert metrics["estimator"] == "adversarial:hinge:pack2" and metrics["steps"] == 20
    for name in ("samples.png", "gan_losses.png", "modes.png", "history.csv", "checkpoint.pt"):
        assert (out / name).exists(), name
    assert json.loads((out / "metrics.json").read_text())["steps"] == 20
    model, config = load_run(out)
    assert config["family"] == "gan" and model.pack == 2
    written = sample_run(out, 10, tmp_path / "s.npy", seed=3)
    arr = np.load(written["samples"])
    assert arr.shape == (10, 2)
    # the loaded model is the trained one (its standardization buffers included)
    torch.manual_seed(3)
    ref = model.sample(10)
    np.testing.assert_allclose(arr, ref.numpy(), rtol=1e-6)
    assert float(model.data_scale.min()) > 0.5  # ring coordinates have std ~0.7


def test_family_digits_frechet_and_cli_defaults(tmp_path):
    from pyro_gen.cli import build_parser, plan_from_args
    from pyro_gen.data import load_data
    from pyro_gen.families.gan import build_gan
    from pyro_gen.runs import run_fit

    plan = plan_from_args(build_parser().parse_args(["fit", "gan", "--data", "digits", "--loss", "hinge"]))
    assert plan.trainer.loss == "hinge" and plan.train.batch_size == 512 and plan.run.binarize == "none"
    # without flags the family's defaults apply: lsgan, linear decay, no moving average
    plain = plan_from_args(build_parser().parse_args(["fit", "gan", "--data", "ring"]))
    assert plain.trainer.loss == "lsgan" and plain.trainer.ema is None
    assert plain.train.lr_schedule == "linear" and plain.train.epochs is None and plain.train.steps is None
    ema_off = plan_from_args(build_parser().parse_args(["fit", "gan", "--ema", "0"]))
    assert ema_off.trainer.ema is None
    ring, grid = load_data("ring"), load_data("grid")
    # PacGAN2 on the ring, no packing on the grid (its 25 modes: the unpacked critic resolves them best)
    assert build_gan(ring, plain.model).pack == 2 and build_gan(grid, plain.model).pack == 1
    # on the mixtures the packed samples go through one shared critic trunk
    from pyro_gen.models.gan import ConvDiscriminator, SharedPackCritic

    for split in (ring, grid):
        assert isinstance(build_gan(split, plain.model).discriminator, SharedPackCritic)
    assert not isinstance(build_gan(load_data("moons"), plain.model).discriminator, SharedPackCritic)
    assert isinstance(
        build_gan(load_data("digits", binarize=None), plain.model).discriminator, ConvDiscriminator
    )
    digits = load_data("digits", binarize=None)
    assert build_gan(digits, plain.model).pack == 1
    packed = plan_from_args(build_parser().parse_args(["fit", "gan", "--pack", "4"]))
    assert build_gan(ring, packed.model).pack == 4
    metrics = run_fit(
        "gan",
        "digits",
        out=tmp_path / "d",
        options={"width": 4, "eval_samples": 200},
        steps=3,
        binarize=None,
        progress=False,
    )
    assert metrics["frechet_distance"] > metrics["frechet_distance_train_vs_test"] >= 0
    assert metrics["feature_classifier_accuracy"] > 0.9
    assert (tmp_path / "d" / "samples.png").exists()


def test_family_rejects_unknown_loss(tmp_path):
    from pyro_gen.runs import run_fit

    with pytest.raises(ValueError, match="loss must be one of"):
        run_fit("gan", "ring", out=tmp_path, options={"loss": "vanilla"}, steps=1, progress=False)


def test_family_resume_continues_from_the_run_checkpoint(tmp_path):
    from pyro_gen.inference import load_checkpoint
    from pyro_gen.runs import run_fit

    out = tmp_path / "run"
    opts = {"loss": "ns", "hidden": "8", "ema": 0.9, "checkpoint_every": 2, "eval_samples": 100}
    run_fit("gan", "ring", out=out, options=opts, steps=4, log_every=1, progress=False)
    assert load_checkpoint(out / "checkpoint.pt")["loop"]["step"] == 4
    first = (out / "history.csv").read_text().splitlines()
    metrics = run_fit("gan", "ring", out=out, options=opts, steps=6, log_every=1, progress=False, resume=True)
    state = load_checkpoint(out / "checkpoint.pt")
    assert metrics["steps"] == 6 and state["loop"]["step"] == 6
    # the history continues the saved one
    history = (out / "history.csv").read_text().splitlines()
    assert [int(float(line.split(",")[0])) for line in history[1:]] == [1, 2, 3, 4, 5, 6]
    # rows 1-4 are the first run's (the linear decay's horizon changed only from step 5 on)
    assert [r.split(",")[:5] for r in history[:5]] == [r.split(",")[:5] for r in first[:5]]
    with pytest.raises(ValueError, match="does not exist"):
        run_fit("gan", "ring", out=tmp_path / "empty", options=opts, steps=6, progress=False, resume=True)


def test_gan_losses_figure_shows_the_within_mode_spread(tmp_path, monkeypatch):
    """With the spread in the history, gan_losses.png gets a third panel: spread per generator step."""
    import pyro_gen.report.gan as gan_report

    figures = []
    monkeypatch.setattr(gan_report, "save_figure", lambda fig, path, **kw: figures.append(fig) or path)
    rows = [
        {"step": s, "d_loss": 0.2, "g_loss": 0.3, "modes_captured": 8, "high_quality_share": 0.9,
         "within_mode_spread": 0.5 + 0.01 * s}
        for s in range(1, 6)
    ]  # fmt: skip
    rows.append({"step": 6, "d_loss": 0.2, "g_loss": 0.3, "within_mode_spread": ""})  # not logged here
    gan_report.plot_gan_losses(rows, tmp_path / "g.png")
    losses, modes, spread = [ax for ax in figures[0].axes if ax.get_xlabel()]
    assert spread.get_xlabel() == "generator step"
    assert spread.get_ylabel() == "within-mode spread (x data std, median over modes)"
    (line,) = [ln for ln in spread.get_lines() if ln.get_label() == "samples / data"]
    assert list(line.get_ydata()) == pytest.approx([0.51, 0.52, 0.53, 0.54, 0.55])
    figures.clear()
    gan_report.plot_gan_losses(
        [{k: r[k] for k in ("step", "d_loss", "g_loss")} for r in rows], tmp_path / "h.png"
    )
    assert len(figures[0].axes) == 1  # no mode metrics logged: the losses only


def test_run_trained_under_another_default_packing_loads_as_trained(tmp_path, monkeypatch):
    """A run whose packing was left to the family loads with the packing its checkpoint holds."""
    import pyro_gen.families.gan as family
    from pyro_gen.runs import load_run, run_fit

    out = tmp_path / "run"
    monkeypatch.setitem(family.DEFAULT_PACK, "ring", 2)
    run_fit("gan", "ring", out=out, options={"hidden": "8,8", "eval_samples": 100}, steps=2, progress=False)
    model, config = load_run(out)
    assert model.pack == 2 and config["model"]["pack"] is None
    monkeypatch.setitem(family.DEFAULT_PACK, "ring", 4)  # the family's default changed since
    again, _ = load_run(out)
    assert again.pack == 2 and not again.training
    torch.manual_seed(0)
    a = model.sample(5)
    torch.manual_seed(0)
    assert torch.equal(a, again.sample(5))
    # a plain packed MLP critic (the earlier default architecture) loads as one too
    plain = tmp_path / "plain"
    monkeypatch.setitem(family.DEFAULT_ARCH, "ring", "mlp")
    run_fit("gan", "ring", out=plain, options={"hidden": "8,8", "eval_samples": 100}, steps=2, progress=False)
    monkeypatch.setitem(family.DEFAULT_ARCH, "ring", "mlp-shared")
    old, _ = load_run(plain)
    assert old.pack == 4 and not hasattr(old.discriminator, "trunk")  # pack 4 was the default then
    monkeypatch.setitem(family.DEFAULT_PACK, "ring", 2)
    (out / "checkpoint.pt").unlink()
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        load_run(out)


def test_shared_trunk_critic_reads_each_packed_sample_alike():
    from pyro_gen.models.gan import GAN, SharedPackCritic

    critic = SharedPackCritic(2, (16, 16, 8), pack=2)
    x = torch.randn(6, 4)
    swapped = torch.cat([x[:, 2:], x[:, :2]], dim=1)
    # one trunk for both samples: swapping them changes only the order the head reads
    h = critic.trunk(x.reshape(6, 2, 2))
    assert torch.allclose(h[:, 0], critic.trunk(x[:, :2])) and torch.allclose(h[:, 1], critic.trunk(x[:, 2:]))
    assert critic(x).shape == (6, 1) and critic(swapped).shape == (6, 1)
    gan = GAN.for_data(2, arch="mlp-shared", pack=2)
    assert isinstance(gan.discriminator, SharedPackCritic)
    assert gan.discriminate(torch.randn(8, 2)).shape == (4,)
    one = SharedPackCritic(2, (16,), pack=2)  # one width: that trunk layer and a linear head
    assert one(x).shape == (6, 1) and len(one.head) == 1
    with pytest.raises(ValueError, match="at least one hidden width"):
        SharedPackCritic(2, (), pack=2)
