"""The adversarial objective: loss closed forms, gradient penalty, training, resume, divergence."""

import math

import pytest
import torch
from torch import nn

from pyro_gen.inference import load_checkpoint
from pyro_gen.inference.adversarial import (
    LOSSES,
    check_loss,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    train_gan,
)
from pyro_gen.models.gan import GAN, mlp_discriminator


def test_loss_closed_forms_at_chance_logits():
    zero = torch.zeros(5)
    log2 = math.log(2.0)
    for name in ("minimax", "ns"):  # binary cross-entropy at D = 1/2
        assert float(discriminator_loss(name, zero, zero)) == pytest.approx(2 * log2)
    assert float(generator_loss("minimax", zero)) == pytest.approx(-log2)  # log(1 - 1/2)
    assert float(generator_loss("ns", zero)) == pytest.approx(log2)  # -log(1/2)
    assert float(discriminator_loss("hinge", zero, zero)) == pytest.approx(2.0)
    assert float(discriminator_loss("lsgan", zero, zero)) == pytest.approx(0.5)
    assert float(generator_loss("lsgan", zero)) == pytest.approx(0.5)
    r, f = torch.tensor([2.0, 4.0]), torch.tensor([-1.0, 1.0])
    assert float(discriminator_loss("wgan-gp", r, f)) == pytest.approx(0.0 - 3.0)
    assert float(generator_loss("wgan-gp", f)) == pytest.approx(0.0)


def test_generator_gradients_with_respect_to_the_logit():
    # d/df log(1 - sigmoid f) = -sigmoid(f);  d/df -log sigmoid(f) = -(1 - sigmoid f)
    f = torch.tensor([-8.0, -2.0, 0.0, 3.0], requires_grad=True)
    (g_mm,) = torch.autograd.grad(generator_loss("minimax", f), f)
    (g_ns,) = torch.autograd.grad(generator_loss("ns", f), f)
    s = torch.sigmoid(f.detach())
    torch.testing.assert_close(g_mm, -s / 4)
    torch.testing.assert_close(g_ns, -(1 - s) / 4)
    # confident discriminator (f = -8): the minimax gradient has vanished, the ns one has not
    assert abs(float(g_mm[0])) < 1e-3 < abs(float(g_ns[0]))


def test_check_loss_aliases_and_unknown_names():
    assert check_loss("non-saturating") == "ns"
    assert check_loss("WGAN") == "wgan-gp"
    assert set(LOSSES) == {"minimax", "ns", "wgan-gp", "hinge", "lsgan"}
    with pytest.raises(ValueError, match="unknown GAN loss 'vanilla'"):
        check_loss("vanilla")


@pytest.mark.parametrize("dim", [1, 2, 8])
def test_gradient_penalty_zero_for_unit_norm_linear_critic(dim):
    critic = nn.Linear(dim, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.randn(1, dim))
        critic.weight /= critic.weight.norm()
    real, fake = torch.randn(64, dim), torch.randn(64, dim) + 3
    assert float(gradient_penalty(critic, real, fake).detach()) == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():  # |w| = 2 -> (2 - 1)^2 = 1 everywhere
        critic.weight *= 2
    assert float(gradient_penalty(critic, real, fake).detach()) == pytest.approx(1.0, abs=1e-5)


def test_gradient_penalty_differentiable_and_rejects_shape_mismatch():
    critic = nn.Linear(2, 1)
    gp = gradient_penalty(critic, torch.randn(8, 2), torch.randn(8, 2))
    gp.backward()  # create_graph=True: the penalty trains the critic
    assert critic.weight.grad is not None
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(critic, torch.randn(8, 2), torch.randn(4, 2))










@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_moves_the_generator_to_the_data(loss):
    # 2-D on purpose: in 1-D the two-sided gradient penalty has two disconnected optima
    # (critic slope +1 or -1), and a critic that starts with the wrong slope stays there.
    torch.manual_seed(0)
    target = torch.tensor([2.0, -1.0])
    data = target + 0.5 * torch.randn(2000, 2)
    gen = nn.Linear(2, 2)
    with torch.no_grad():
        gen.weight.copy_(torch.eye(2))
        gen.bias.zero_()
    gan = GAN(2, 2, gen, mlp_discriminator(2, (16, 16)))
    res = train_gan(
        gan,
        data,
        loss=loss,
        steps=150,
        batch_size=128,
        lr=1e-2,
        d_steps=2 if loss == "wgan-gp" else 1,
        log_every=50,
        progress=False,
    )
    # the generator starts at N(0, I), 2.24 away from the data's mean
    assert float((gan.sample(4000).mean(0) - target).norm()) < 1.0
    assert [r["step"] for r in res.history] == [50, 100, 150]


def test_train_gan_returns_fit_result_and_checkpoint(tmp_path):
    data = torch.randn(500, 2)
    gan = GAN.for_data(2, hidden=(8,), pack=2)
    seen = []
    res = train_gan(
        gan,
        data,
        steps=6,
        batch_size=32,
        log_every=3,
        progress=False,
        checkpoint=tmp_path / "c.pt",
        eval_fn=lambda g: {"mean_x": float(g.sample(10).mean())},
        eval_every=3,
        callbacks=[seen.append],
        lr_schedule="linear",
    )
    assert res.steps == 6 and res.estimator == "adversarial:ns:pack2"
    assert res.epochs == pytest.approx(6 / (500 // 32))
    assert len(res.history) == 2 and seen == res.history
    row = res.history[-1]
    for key in ("step", "epoch", "d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm", "seconds", "mean_x"):
        assert key in row
    assert 0 < res.history[0]["seconds"] <= row["seconds"] == pytest.approx(res.seconds)
    state = load_checkpoint(tmp_path / "c.pt")
    gan2 = GAN.for_data(2, hidden=(8,), pack=2)
    gan2.load_state_dict(state["module_state"])
    z = torch.randn(5, 2)
    torch.testing.assert_close(gan2.generate(z), gan.generate(z))
    assert set(state["optimizer_state"]) == {"generator", "critic"}


@pytest.mark.parametrize("ema", [None, 0.9])
def test_train_gan_resume_matches_an_uninterrupted_run(tmp_path, ema):
    data = torch.randn(300, 2) + 1.0
    args = {
        "steps": 8,
        "batch_size": 64,
        "log_every": 2,
        "progress": False,
        "lr_schedule": "linear",
        "ema": ema,
    }
    torch.manual_seed(1)
    straight = GAN.for_data(2, hidden=(8,), pack=2)
    res_a = train_gan(straight, data, seed=3, **args)
    torch.manual_seed(1)
    first = GAN.for_data(2, hidden=(8,), pack=2)
    ckpt = tmp_path / "c.pt"

    def interrupt(row):
        if row["step"] == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # killed at step 6: the last checkpoint is step 4's
        train_gan(first, data, seed=3, checkpoint=ckpt, checkpoint_every=4, callbacks=[interrupt], **args)
    assert load_checkpoint(ckpt)["loop"]["step"] == 4
    torch.manual_seed(99)  # the resumed run restores the saved RNG state, not this one
    resumed = GAN.for_data(2, hidden=(8,), pack=2)
    res_b = train_gan(resumed, data, seed=3, resume=ckpt, checkpoint=ckpt, **args)
    z = torch.randn(7, 2)
    torch.testing.assert_close(resumed.generate(z), straight.generate(z))
    x = torch.randn(8, 2)
    torch.testing.assert_close(resumed.discriminate(x), straight.discriminate(x))
    assert [r["step"] for r in res_b.history] == [r["step"] for r in res_a.history] == [2, 4, 6, 8]
    assert res_b.history[-1]["d_loss"] == pytest.approx(res_a.history[-1]["d_loss"])


def test_train_gan_resume_rejects_another_loss_or_ema_setting(tmp_path):
    data = torch.randn(100, 2)
    gan = GAN.for_data(2, hidden=(8,))
    train_gan(gan, data, steps=2, batch_size=32, progress=False, checkpoint=tmp_path / "c.pt")
    with pytest.raises(ValueError, match="not a 'hinge' run"):
        train_gan(gan, data, loss="hinge", steps=4, batch_size=32, progress=False, resume=tmp_path / "c.pt")
    with pytest.raises(ValueError, match="ema must be set"):
        train_gan(gan, data, ema=0.9, steps=4, batch_size=32, progress=False, resume=tmp_path / "c.pt")


def test_ema_generator_is_the_warmed_up_exponential_average():
    from pyro_gen.inference.adversarial import make_ema

    net = nn.Linear(1, 1, bias=False)
    avg = make_ema(net, 0.5)
    expected = None
    for t, w in enumerate([4.0, 2.0, 8.0, 0.0, 6.0]):
        with torch.no_grad():
            net.weight.fill_(w)
        avg.update_parameters(net)
        # first update copies; update t >= 1 uses decay min(0.5, (1 + t) / (10 + t))
        expected = (
            w
            if expected is None
            else min(0.5, (1 + t) / (10 + t)) * expected + (1 - min(0.5, (1 + t) / (10 + t))) * w
        )
        assert float(avg.module.weight.detach()) == pytest.approx(expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"loss": "nope"}, "unknown GAN loss"),
        ({"batch_size": 30}, "multiple of pack=4"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"d_steps": 0}, "d_steps"),
        ({"gp_weight": -1.0}, "gp_weight"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"steps": 0}, "steps must be positive"),
        ({"ema": 1.0}, "ema must be a decay"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
    ],
)
def test_train_gan_rejects_bad_arguments(kwargs, match):
    gan = GAN.for_data(2, hidden=(8,), pack=4)
    args = {"steps": 1, "batch_size": 32, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        train_gan(gan, torch.randn(100, 2), **args)


def test_train_gan_rejects_bad_data():
    gan = GAN.for_data(2, hidden=(8,))
    with pytest.raises(ValueError, match="3 columns"):
        train_gan(gan, torch.randn(100, 3), steps=1, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        train_gan(gan, torch.full((100, 2), float("nan")), steps=1, progress=False)
    with pytest.raises(ValueError, match="must be a pyro_gen"):
        train_gan(nn.Linear(2, 2), torch.randn(100, 2), steps=1, progress=False)


def test_trainers_without_gradient_averaging_refuse_a_process_group():
    from pyro_gen.config import TrainConfig
    from pyro_gen.inference.adversarial import AdversarialObjective
    from pyro_gen.inference.engine import train

    gan = GAN.for_data(2, hidden=(8,))
    with pytest.raises(ValueError, match="adversarial trainer does not average gradients"):
        train(AdversarialObjective(gan), torch.randn(64, 2), TrainConfig(steps=1), distributed=True)
