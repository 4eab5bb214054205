"""Autoencoders: penalties against autograd and closed forms, denoising target, trainer, probe."""

import pytest
import torch

from pyro_gen.data import load_digits
from pyro_gen.evaluation.probe import encoder_features, linear_probe, probe_split
from pyro_gen.inference.loss import mean_loss, train_autoencoder
from pyro_gen.models.autoencoders import Autoencoder
from pyro_gen.models.vae import VAE


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_contractive_penalty_equals_autograd_jacobian_frobenius():
    ae = Autoencoder(6, code_dim=3, hidden=(5,), activation="tanh", kind="contractive", weight=1.0)
    x = torch.rand(4, 6)
    got = ae.contractive_penalty(x)
    for n in range(4):
        jac = torch.autograd.functional.jacobian(ae.encoder, x[n])  # (3, 6)
        assert jac.shape == (3, 6)
        assert torch.allclose(got[n], jac.pow(2).sum(), rtol=1e-5, atol=1e-7)


def test_contractive_penalty_closed_form_single_sigmoid_layer():
    # Rifai et al. 2011: for h = sigmoid(W x + b), ||J||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ji^2.
    ae = Autoencoder(7, code_dim=4, hidden=(), kind="contractive", weight=0.5)
    x = torch.rand(5, 7)
    lin = ae.encoder[0][0]
    h = torch.sigmoid(lin(x))
    closed = ((h * (1 - h)) ** 2 * lin.weight.pow(2).sum(1)).sum(-1)
    assert torch.allclose(ae.contractive_penalty(x), closed, rtol=1e-5, atol=1e-7)
    terms = ae.loss_terms(x)
    assert torch.allclose(terms["penalty"], 0.5 * closed, rtol=1e-5, atol=1e-7)


def test_contractive_penalty_gradient_matches_double_backward():
    ae = Autoencoder(5, code_dim=3, hidden=(4,), activation="tanh", kind="contractive", weight=1.0)
    x = torch.rand(3, 5)
    ae.contractive_penalty(x).sum().backward()
    got = [p.grad.clone() for p in ae.encoder.parameters()]
    ae.zero_grad()
    total = 0.0
    for n in range(3):
        xn = x[n].clone().requires_grad_(True)
        h = ae.encoder(xn)
        for j in range(3):
            (g,) = torch.autograd.grad(h[j], xn, create_graph=True)
            total = total + g.pow(2).sum()
    total.backward()
    for a, p in zip(got, ae.encoder.parameters()):
        assert torch.allclose(a, p.grad, rtol=1e-4, atol=1e-6)


def test_denoising_loss_is_against_clean_input():
    ae = Autoencoder(10, code_dim=4, hidden=(8,), kind="denoising", noise="mask", noise_level=0.5)
    x = torch.rand(16, 10)
    torch.manual_seed(3)
    got = ae.loss_terms(x)["reconstruction"]
    torch.manual_seed(3)
    x_noisy = ae.corrupt(x)
    assert not torch.equal(x_noisy, x)
    logits = ae.decoder(ae.encoder(x_noisy))
    clean = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    noisy = torch.nn.functional.binary_cross_entropy_with_logits(logits, x_noisy, reduction="none").sum(-1)
    assert torch.allclose(got, clean)
    assert not torch.allclose(got, noisy)


def test_corruption_statistics():
    x = torch.ones(200, 50)
    ae = Autoencoder(50, kind="denoising", noise="mask", noise_level=0.3)
    frac_zero = float((ae.corrupt(x) == 0).float().mean())
    assert abs(frac_zero - 0.3) < 0.02
    g = Autoencoder(50, kind="denoising", noise="gaussian", noise_level=0.2, loss="mse")
    eps = g.corrupt(x) - x
    assert abs(float(eps.std()) - 0.2) < 0.01 and abs(float(eps.mean())) < 0.01


def test_sparse_penalty_is_l1_of_code_and_losses_are_the_likelihoods():
    ae = Autoencoder(6, code_dim=3, hidden=(5,), code_activation="tanh", kind="sparse", weight=0.1)
    x = torch.rand(4, 6)
    h = ae.encoder(x)
    terms = ae.loss_terms(x)
    assert torch.allclose(terms["penalty"], 0.1 * h.abs().sum(-1))
    logits = ae.decoder(h)
    bern = torch.distributions.Bernoulli(logits=logits).log_prob(x.round()).sum(-1)
    assert torch.allclose(ae.reconstruction_loss(logits, x.round()), -bern, atol=1e-5)
    mse = Autoencoder(6, code_dim=3, loss="mse")
    assert torch.allclose(mse.reconstruction_loss(logits, x), (logits - x).pow(2).sum(-1))
    plain = Autoencoder(6, code_dim=3)
    assert torch.equal(plain.loss_terms(x)["penalty"], torch.zeros(4))


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"kind": "variational"}, "kind"),
        ({"loss": "l1"}, "loss"),
        ({"noise": "salt"}, "noise"),
        ({"noise_level": 1.0}, "noise_level"),
        ({"weight": -1.0}, "weight"),
        ({"code_activation": "gelu"}, "code_activation"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Autoencoder(4, **kwargs)


def test_trainer_rejects_bad_data_and_arguments():
    ae = Autoencoder(4)
    with pytest.raises(ValueError, match="shape"):
        train_autoencoder(ae, torch.rand(10, 5), steps=1, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_autoencoder(ae, torch.rand(10, 4) * 3, steps=1, progress=False)
    with pytest.raises(ValueError, match="exactly one"):
        train_autoencoder(ae, torch.rand(10, 4), progress=False)


def test_training_lowers_test_loss_and_features_beat_chance(digits):
    ae = Autoencoder(64, code_dim=16, hidden=(64,), kind="denoising", noise_level=0.2)
    ae.init_output_bias(digits.train.mean(0))
    before = mean_loss(ae, digits.test)
    res = train_autoencoder(
        ae, digits.train, epochs=15, batch_size=64, lr=3e-3, test_data=digits.test, progress=False
    )
    assert res.steps == 15 * (digits.train.shape[0] // 64)
    assert res.seconds > 0 and len(res.history) == 15
    assert res.history[-1]["test_loss"] < 0.8 * before
    probe = probe_split(ae, digits)
    assert probe["num_features"] == 16
    assert probe["accuracy"] > 0.8


def test_probe_reads_vae_means_and_is_at_chance_on_constant_features(digits):
    vae = VAE(64, latent_dim=5, hidden=(32,))
    feats = encoder_features(vae, digits.test[:7])
    assert feats.shape == (7, 5)
    assert torch.allclose(torch.from_numpy(feats).float(), vae.encode(digits.test[:7])[0], atol=1e-6)
    raw = linear_probe(None, digits.train, digits.train_labels, digits.test, digits.test_labels)
    assert raw["accuracy"] > 0.9

    def constant(x):
        return torch.zeros(x.shape[0], 3)

    chance = linear_probe(constant, digits.train, digits.train_labels, digits.test, digits.test_labels)
    assert chance["accuracy"] < 0.2
    with pytest.raises(ValueError, match="labels"):
        linear_probe(None, digits.train, None, digits.test, digits.test_labels)


def test_autoencoder_family_run_folder_round_trip(tmp_path, digits):
    from pyro_gen.runs import load_run, run_fit

    opts = {"kind": "sparse", "code_dim": 8, "hidden": "32", "weight": 0.05}
    metrics = run_fit("autoencoder", "digits", out=tmp_path, options=opts, steps=5, progress=False)
    model, _ = load_run(tmp_path)
    assert isinstance(model, Autoencoder) and model.kind == "sparse" and model.weight == 0.05
    from pyro_gen.data import load_data

    test = load_data("digits", binarize="dynamic", seed=0).test
    assert abs(mean_loss(model, test) - metrics["test_loss"]) < 1e-4
    assert 0.0 <= metrics["probe_accuracy"] <= 1.0
    assert (tmp_path / "loss.png").exists() and (tmp_path / "reconstructions.png").exists()
