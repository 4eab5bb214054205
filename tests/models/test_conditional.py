"""The conditional VAE and M2: enumeration against hand-written marginals, the labelled split,
and class-conditional samples checked by a digit classifier."""

import dataclasses
import math

import pyro
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

from pyro_gen.data import load_data
from pyro_gen.families.conditional import (
    CVAEConfig,
    M2Config,
    balanced_labelled_indices,
    build_m2,
    prepare_cvae,
    prepare_m2,
)
from pyro_gen.models.base import minibatch
from pyro_gen.models.conditional import M2, ConditionalVAE, with_labels

Normal = torch.distributions.Normal


def _elbo() -> TraceEnum_ELBO:
    return TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False)


def _hand_labelled(m: M2, x, y, eps):
    """Return L(x, y) + log p(y) (weighted) + alpha log q(y | x), per point, for draws ``eps``."""
    y1h = m.one_hot(y)
    loc, scale = m.encode_z(x, y1h)
    z = loc + scale * eps
    log_px = torch.distributions.Bernoulli(logits=m.decoder(torch.cat([z, y1h], -1))).log_prob(x).sum(-1)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = Normal(loc, scale).log_prob(z).sum(-1)
    log_qy = torch.log_softmax(m.classifier_logits(x), -1).gather(-1, y[:, None])[:, 0]
    elbo = log_px + log_pz - log_qz - math.log(m.num_classes)
    return m.labelled_weight * (elbo + m.alpha_weight * log_qy)


def _hand_unlabelled(m: M2, x, eps):
    """Return U(x) = sum_y q(y|x) (L(x, y) + log p(y) - log q(y|x)), per point, written out over y."""
    log_q = torch.log_softmax(m.classifier_logits(x), -1)
    total = torch.zeros(x.shape[0])
    for c in range(m.num_classes):
        y1h = m.one_hot(torch.full((x.shape[0],), c))
        loc, scale = m.encode_z(x, y1h)
        z = loc + scale * eps[c]
        log_px = torch.distributions.Bernoulli(logits=m.decoder(torch.cat([z, y1h], -1))).log_prob(x).sum(-1)
        log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz = Normal(loc, scale).log_prob(z).sum(-1)
        inner = log_px + log_pz - log_qz - math.log(m.num_classes) - log_q[:, c]
        total = total + log_q[:, c].exp() * inner
    return total


@pytest.fixture
def m2() -> M2:
    torch.manual_seed(0)
    return M2(6, 3, latent_dim=2, hidden=(8,), activation="tanh", alpha_weight=2.0, labelled_weight=0.5)


def test_m2_unlabelled_loss_is_the_explicit_sum_over_classes(m2):
    x = torch.bernoulli(torch.rand(4, 6, generator=torch.Generator().manual_seed(1)))
    batch = with_labels(x, torch.full((4,), -1))
    torch.manual_seed(5)
    loss = _elbo().differentiable_loss(m2.model, config_enumerate(m2.guide), batch)
    loss.backward()
    enum_grad = m2.classifier_net[0].weight.grad.clone()
    m2.zero_grad()
    torch.manual_seed(5)
    eps = torch.empty(3, 4, 2).normal_()  # one draw of z per enumerated class, as the guide draws it
    hand = -_hand_unlabelled(m2, x, eps).sum()
    assert torch.allclose(loss, hand, rtol=1e-5)
    hand.backward()  # the classifier is trained through q(y|x) in the sum: the same gradient
    assert torch.allclose(enum_grad, m2.classifier_net[0].weight.grad, rtol=1e-4, atol=1e-6)


def test_m2_mixed_batch_is_labelled_plus_unlabelled_and_scales_with_the_minibatch(m2):
    g = torch.Generator().manual_seed(2)
    x = torch.bernoulli(torch.rand(5, 6, generator=g))
    labels = torch.tensor([2, -1, 0, -1, -1])
    batch = with_labels(x, labels)
    lab = labels >= 0
    torch.manual_seed(7)
    loss = _elbo().differentiable_loss(m2.model, config_enumerate(m2.guide), batch)
    torch.manual_seed(7)
    eps_l = torch.empty(2, 2).normal_()  # the guide draws the labelled points' z first
    eps_u = torch.empty(3, 3, 2).normal_()
    hand = -(
        _hand_labelled(m2, x[lab], labels[lab], eps_l).sum() + _hand_unlabelled(m2, x[~lab], eps_u).sum()
    )
    assert torch.allclose(loss, hand, rtol=1e-5)
    # inside a training step over 5 of 50 points every term is scaled by 50 / 5
    torch.manual_seed(7)
    with minibatch(50, torch.arange(5)):
        scaled = _elbo().differentiable_loss(m2.model, config_enumerate(m2.guide), batch)
    assert torch.allclose(scaled, 10 * loss, rtol=1e-5)


def test_m2_importance_sampling_of_unlabelled_points_estimates_the_marginal(m2):
    from pyro_gen.evaluation import evaluate

    x = torch.bernoulli(torch.rand(3, 6, generator=torch.Generator().manual_seed(3)))
    batch = with_labels(x, torch.full((3,), -1))
    # the ELBO with y summed out is a lower bound on the importance-sampled log p(x)
    torch.manual_seed(0)
    elbo = -_elbo().loss(m2.model, config_enumerate(m2.guide), batch) / 3
    ev = evaluate(m2, batch, k=2000, seed=0)
    assert ev.kind == "importance" and ev.log_likelihood >= elbo - 0.05


def test_balanced_labelled_split_is_balanced_and_seeded():
    labels = load_data("digits").train_labels
    idx = balanced_labelled_indices(labels, 25, seed=3)
    counts = torch.bincount(labels[idx], minlength=10)
    assert counts.sum() == 25 and set(counts.tolist()) <= {2, 3} and idx.unique().numel() == 25
    assert torch.equal(idx, balanced_labelled_indices(labels, 25, seed=3))
    assert not torch.equal(idx, balanced_labelled_indices(labels, 25, seed=4))
    with pytest.raises(ValueError, match="--labels must be between the number of classes"):
        balanced_labelled_indices(labels, 5)


def test_prepare_m2_keeps_the_labels_asked_for_and_repeats_them():
    data = load_data("digits", binarize="dynamic")
    cfg = M2Config(labels=20, labelled_share=0.2)
    prep = prepare_m2(data, cfg, "digits", seed=1)
    split = prep.info["m2"]
    n, r = data.train.shape[0], split["repeat"]
    assert r == round(0.2 * (n - 20) / (0.8 * 20)) and prep.train.shape == (n + (r - 1) * 20, 65)
    column = prep.train[:n, -1]
    idx = torch.tensor(split["labelled_indices"])
    assert torch.equal(torch.nonzero(column >= 0).flatten(), idx)
    assert torch.equal(column[idx].long(), data.train_labels[idx])
    assert (prep.test[:, -1] == -1).all() and torch.equal(prep.test_labels, data.test_labels)
    # binarization acts on the pixels only; the labels ride along
    out = prep.batch_transform(prep.train[idx])
    assert torch.equal(out[:, -1], prep.train[idx, -1]) and set(out[:, :-1].unique().tolist()) <= {0.0, 1.0}
    model = build_m2(prep, cfg)
    assert model.labelled_weight == pytest.approx(1 / r)
    assert model.alpha_weight == pytest.approx(0.1 * n / 20)


def test_labelled_models_refuse_bad_labels_and_unlabelled_data():
    cvae = ConditionalVAE(4, 3, 2, (8,), "relu", "bernoulli", 0.1, "mlp", None, (4,))
    with pytest.raises(ValueError, match=r"labels outside 0..2, e.g. -1"):
        cvae.check_data(with_labels(torch.rand(2, 4), torch.tensor([0, -1])))
    with pytest.raises(ValueError, match=r"shape \(N, 5\)"):
        cvae.check_data(torch.rand(2, 4))
    M2(4, 3, hidden=(8,)).check_data(with_labels(torch.rand(2, 4), torch.tensor([0, -1])))
    digits = load_data("digits")
    unlabelled = dataclasses.replace(digits, train_labels=None, test_labels=None)
    with pytest.raises(ValueError, match="needs a labelled data set"):
        prepare_cvae(unlabelled, CVAEConfig())
    with pytest.raises(ValueError, match="label must be in 0..2"):
        cvae.sample(2, label=3)


def test_cvae_samples_carry_the_class_asked_for():
    from pyro_gen.evaluation.classifier import train_digit_classifier
    from pyro_gen.families.conditional import build_cvae
    from pyro_gen.inference import fit

    data = prepare_cvae(load_data("digits", binarize="dynamic"), CVAEConfig())
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    model = build_cvae(data, CVAEConfig(latent_dim=4, hidden="64"))
    fit(
        model,
        data.train,
        estimator="reparam",
        steps=500,
        batch_size=64,
        lr=3e-3,
        transform=data.batch_transform,
    )
    clf = train_digit_classifier(data.train[:, :64], data.train_labels, epochs=15, seed=0)
    y = torch.arange(300) % 10
    torch.manual_seed(1)
    samples = model.sample(300, label=y)
    asked = float((clf.predict(samples) == y).double().mean())
    # a decoder that ignored the label would land near chance (0.1)
    assert asked > 0.6
    one = model.sample(50, label=7)
    assert float((clf.predict(one) == 7).double().mean()) > 0.6


def _hand_labelled_parts(m: M2, x, y, eps):
    """Return ``(L(x, y) + log p(y), log q(y | x))`` per labelled point, for draws ``eps``."""
    y1h = m.one_hot(y)
    loc, scale = m.encode_z(x, y1h)
    z = loc + scale * eps
    log_px = torch.distributions.Bernoulli(logits=m.decoder(torch.cat([z, y1h], -1))).log_prob(x).sum(-1)
    elbo = log_px + Normal(0.0, 1.0).log_prob(z).sum(-1) - Normal(loc, scale).log_prob(z).sum(-1)
    log_qy = torch.log_softmax(m.classifier_logits(x), -1).gather(-1, y[:, None])[:, 0]
    return elbo - math.log(m.num_classes), log_qy


def test_m2_balanced_minibatch_scales_each_part_to_its_own_set_and_weights_the_labelled_elbo():
    torch.manual_seed(0)
    m = M2(6, 3, latent_dim=2, hidden=(8,), activation="tanh", alpha_weight=2.0)
    m.labelled_elbo_weight, m.num_labelled = 7.0, 4
    g = torch.Generator().manual_seed(4)
    x = torch.bernoulli(torch.rand(5, 6, generator=g))
    labels = torch.tensor([-1, -1, -1, 2, 0])  # 3 unlabelled rows of 50, 2 labelled rows of 4
    batch = with_labels(x, labels)
    torch.manual_seed(3)
    with minibatch(50, torch.arange(3)):
        loss = _elbo().differentiable_loss(m.model, config_enumerate(m.guide), batch)
    torch.manual_seed(3)
    eps_l = torch.empty(2, 2).normal_()
    eps_u = torch.empty(3, 3, 2).normal_()
    elbo_l, log_qy = _hand_labelled_parts(m, x[3:], labels[3:], eps_l)
    # J = G (4/2) sum_l L(x, y) + (4/2) alpha sum_l log q(y|x) + (50/3) sum_u U(x)
    unlabelled = _hand_unlabelled(m, x[:3], eps_u).sum()
    hand = -((4 / 2) * (7.0 * elbo_l + 2.0 * log_qy).sum() + (50 / 3) * unlabelled)
    assert torch.allclose(loss, hand, rtol=1e-5)
    # the labelled ELBO weight acts on L(x, y) only: the classifier's gradient from the labelled
    # rows is alpha's alone (without unlabelled rows, G leaves it unchanged)
    lab_only = with_labels(x[3:], labels[3:])
    grads = []
    for weight in (1.0, 7.0):
        m.zero_grad()
        m.labelled_elbo_weight = weight
        with minibatch(50, torch.arange(0)):
            _elbo().differentiable_loss(m.model, config_enumerate(m.guide), lab_only).backward()
        grads.append(m.classifier_net[0].weight.grad.clone())
    assert torch.allclose(grads[0], grads[1]) and grads[0].abs().sum() > 0


def test_prepare_m2_balanced_minibatches_append_the_labelled_rows_to_every_batch():
    data = load_data("digits", binarize="dynamic")
    n = data.train.shape[0]
    cfg = M2Config(labels=20, labelled_batch=20)
    prep = prepare_m2(data, cfg, "digits", seed=1)
    idx = torch.tensor(prep.info["m2"]["labelled_indices"])
    # the training tensor holds the unlabelled points only, once each
    assert prep.train.shape == (n - 20, 65) and (prep.train[:, -1] == -1).all()
    assert prep.info["m2"]["repeat"] == 1 and prep.info["m2"]["num_train"] == n
    out = prep.batch_transform(prep.train[:7])
    assert out.shape == (27, 65) and torch.equal(out[:7, -1], prep.train[:7, -1])
    # with B = --labels every batch carries all labelled points, binarized like the others
    assert torch.equal(out[7:, -1].long(), data.train_labels[idx])
    assert set(out[:, :-1].unique().tolist()) <= {0.0, 1.0}
    model = build_m2(prep, cfg)
    assert model.num_labelled == 20 and model.labelled_weight == 1.0
    assert model.alpha_weight == pytest.approx(0.1 * n / 20)
    # B < --labels: B distinct labelled points per batch, drawn anew each time
    few = prepare_m2(data, M2Config(labels=20, labelled_batch=5), "digits", seed=1)
    torch.manual_seed(0)
    draws = [few.batch_transform(few.train[:3])[3:] for _ in range(4)]
    pixels = data.train[idx]
    for rows in draws:
        assert rows.shape == (5, 65)
        assert set(rows[:, -1].long().tolist()) <= set(data.train_labels[idx].tolist())
        # each appended row is a (binarized) draw of one of the labelled images
        assert ((rows[:, None, :-1] <= torch.ceil(pixels[None])).all(-1)).any(-1).all()
    assert not all(torch.equal(draws[0], d) for d in draws[1:])


def test_m2_holdout_replaces_the_test_set_with_the_last_training_images():
    data = load_data("digits", binarize="dynamic")
    n = data.train.shape[0]
    prep = prepare_m2(data, M2Config(labels=20, holdout=100), "digits", seed=0)
    assert torch.equal(prep.test_labels, data.train_labels[n - 100 :])
    assert prep.test.shape == (100, 65) and (prep.test[:, -1] == -1).all()
    # binarized once, reproducibly, from the held-out training images
    held = prep.test[:, :-1]
    assert set(held.unique().tolist()) <= {0.0, 1.0} and (held <= torch.ceil(data.train[n - 100 :])).all()
    again = prepare_m2(data, M2Config(labels=20, holdout=100), "digits", seed=0)
    assert torch.equal(again.test, prep.test)
    assert prep.info["m2"]["num_train"] == n - 100 and max(prep.info["m2"]["labelled_indices"]) < n - 100


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"labelled_batch": 10, "labelled_share": 0.2}, "not both"),
        ({"labels": 20, "labelled_batch": 30}, "exceeds the 20 labelled points"),
        ({"labelled_batch": -1}, "must be non-negative"),
        ({"labelled_elbo_weight": 0.0}, "--labelled-elbo-weight must be positive"),
        ({"labelled_share": 1.5}, r"--labelled-share must be in \(0, 1\)"),
    ],
)
def test_m2_config_refuses_inconsistent_labelled_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        M2Config(**settings)


def test_m2_holdout_that_leaves_nothing_is_refused():
    data = load_data("digits")
    with pytest.raises(ValueError, match="--holdout 5000 leaves no training images"):
        prepare_m2(data, M2Config(labels=20, holdout=5000), "digits")
