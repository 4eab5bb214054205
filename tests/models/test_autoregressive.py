"""MADE and PixelCNN: masks (autograd), normalisation, ancestral sampling, maximum-likelihood fit."""

import itertools
import math

import pytest
import torch

from pyro_gen.evaluation import importance_log_likelihood
from pyro_gen.inference import fit
from pyro_gen.models.autoregressive import MADE, MaskedConv2d, PixelCNN, exact_log_likelihood


def _all_binary(d):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)))


def _jacobian(net, x):
    return torch.autograd.functional.jacobian(lambda v: net(v[None])[0], x)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("order", [None, [2, 0, 4, 1, 3]])
def test_made_jacobian_is_strictly_triangular_in_its_order(likelihood, order):
    made = MADE(5, hidden=(16, 16), likelihood=likelihood, order=order, activation="tanh")
    jac = _jacobian(made, torch.randn(5)).abs()  # (num_params * 5, 5)
    pos = made.order
    for p in range(made.num_params):
        block = jac[p * 5 : (p + 1) * 5]
        allowed = pos[None, :] < pos[:, None]  # output d may depend on input j iff j precedes d
        assert torch.all(block[~allowed] == 0)
        # and the masks are not vacuous: allowed connections carry gradient
        assert torch.all(block[allowed] > 0)


@pytest.mark.parametrize("order", [None, [3, 1, 0, 2]])
def test_made_probabilities_sum_to_one_over_all_binary_vectors(order):
    made = MADE(4, hidden=(8,), order=order)
    torch.nn.init.normal_(made.net[-1].bias, std=2.0)
    total = made.log_prob(_all_binary(4)).exp().sum()
    assert abs(float(total) - 1.0) < 1e-5


def test_made_single_dimension_is_a_bernoulli():
    made = MADE(1, hidden=(4,))
    torch.nn.init.constant_(made.net[-1].bias, 0.7)
    lp = made.log_prob(torch.tensor([[0.0], [1.0]]))
    assert torch.allclose(
        lp.exp(), torch.tensor([1 - torch.sigmoid(torch.tensor(0.7)), torch.sigmoid(torch.tensor(0.7))])
    )


def test_made_ancestral_samples_follow_its_probabilities():
    made = MADE(3, hidden=(8,), order=[2, 0, 1])
    for p in made.parameters():
        torch.nn.init.normal_(p, std=1.5)
    grid = _all_binary(3)
    probs = made.log_prob(grid).exp()
    x = made.sample(40000)
    codes = (x * torch.tensor([4.0, 2.0, 1.0])).sum(-1).long()
    freq = torch.bincount(codes, minlength=8).float() / 40000
    assert torch.allclose(freq, probs, atol=0.01)


def test_gaussian_made_log_prob_is_the_product_of_normal_conditionals():
    made = MADE(3, hidden=(6,), likelihood="gaussian")
    x = torch.randn(4, 3)
    out = made(x)
    loc, scale = out[:, :3], torch.nn.functional.softplus(out[:, 3:]) + made.min_scale
    expected = torch.distributions.Normal(loc, scale).log_prob(x).sum(-1)
    assert torch.allclose(made.log_prob(x), expected)
    # the first dimension's conditional does not depend on x at all
    assert torch.allclose(loc[:, 0], loc[0, 0].expand(4))


def test_made_fit_by_maximum_likelihood_learns_a_known_distribution():
    # x1 ~ Bern(0.8); x2 = x1; x3 = 1 - x1 (with 5% flips): entropy is far below 3 bits.
    g = torch.Generator().manual_seed(0)
    x1 = torch.bernoulli(torch.full((2000,), 0.8), generator=g)
    flip = torch.bernoulli(torch.full((2000,), 0.05), generator=g)
    data = torch.stack([x1, x1, (1 - x1 - flip).abs()], 1)
    made = MADE(3, hidden=(16,))
    res = fit(made, data, steps=150, batch_size=500, lr=3e-2, progress=False)
    # true entropy in nats: H(x1) + H(flip)
    h = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    entropy = h(0.8) + h(0.05)
    nll = -float(made.log_prob(data).mean())
    assert nll < entropy + 0.02
    # the SVI loop's ELBO with the empty guide is the log-likelihood
    assert abs(res.final_train_elbo + nll) < 0.05
    # importance sampling with an empty guide returns the exact log-likelihood
    ev = importance_log_likelihood(made, data[:50], k=3)
    assert abs(ev["log_likelihood"] - float(made.log_prob(data[:50]).mean())) < 1e-4
    exact = exact_log_likelihood(made, data[:50])
    assert abs(exact["bits_per_dim"] - ev["bits_per_dim"]) < 1e-4


def test_made_rejects_bad_input():
    with pytest.raises(ValueError, match="order"):
        MADE(3, order=[0, 0, 1])
    with pytest.raises(ValueError, match="likelihood"):
        MADE(3, likelihood="poisson")
    made = MADE(3)
    with pytest.raises(ValueError, match="shape"):
        made.check_data(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        made.check_data(torch.full((2, 3), 2.0))


def test_masked_conv_masks():
    a = MaskedConv2d(1, 1, 3, "A").mask[0, 0]
    b = MaskedConv2d(1, 1, 3, "B").mask[0, 0]
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="mask_type"):
        MaskedConv2d(1, 1, 3, "C")


@pytest.mark.parametrize("shape, layers", [((8, 8), 3), ((6, 5), 2)])
def test_pixelcnn_receptive_field_excludes_current_and_later_pixels(shape, layers):
    net = PixelCNN(shape, channels=8, num_layers=layers)
    d = shape[0] * shape[1]
    x = torch.bernoulli(torch.full((d,), 0.5))
    jac = _jacobian(net, x).abs()  # (d, d): d logit_i / d x_j
    later_or_same = torch.arange(d)[None, :] >= torch.arange(d)[:, None]
    assert torch.all(jac[later_or_same] == 0)
    # the left neighbour and the pixel above are always seen
    w = shape[1]
    assert all(jac[i, i - 1] > 0 for i in range(1, d) if i % w)
    assert all(jac[i, i - w] > 0 for i in range(w, d))


def test_pixelcnn_probabilities_sum_to_one_and_samples_follow_them():
    net = PixelCNN((2, 2), channels=4, num_layers=1, first_kernel=3)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=1.0)
    grid = _all_binary(4)
    probs = net.log_prob(grid).exp()
    assert abs(float(probs.sum()) - 1.0) < 1e-5
    x = net.sample(40000)
    codes = (x * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(-1).long()
    freq = torch.bincount(codes, minlength=16).float() / 40000
    assert torch.allclose(freq, probs, atol=0.01)


def test_pixelcnn_fits_28x28_shapes_and_rejects_wrong_size():
    net = PixelCNN((28, 28), channels=4, num_layers=1)
    assert net.config["first_kernel"] == 7
    x = torch.bernoulli(torch.full((2, 784), 0.3))
    assert net.log_prob(x).shape == (2,)
    with pytest.raises(ValueError, match="28x28"):
        net.check_data(torch.zeros(2, 64))


def test_made_family_run_folder_round_trip(tmp_path):
    from pyro_gen.data import load_data
    from pyro_gen.runs import load_run, run_fit

    metrics = run_fit(
        "made", "digits", out=tmp_path, options={"hidden": "32", "order": "random"}, steps=3, progress=False
    )
    assert metrics["likelihood_kind"] == "exact"
    model, config = load_run(tmp_path)
    assert isinstance(model, MADE) and model.likelihood == "bernoulli"
    test = load_data("digits", binarize="dynamic", seed=0).test
    assert abs(float(model.log_prob(test).mean()) - metrics["test_log_likelihood"]) < 1e-4
    assert abs(metrics["test_bits_per_dim"] + metrics["test_log_likelihood"] / (64 * math.log(2))) < 1e-9


def test_pixelcnn_family_rejects_non_binary_and_non_image_data():
    from pyro_gen.data import load_data
    from pyro_gen.families.made import PixelCNNConfig, build_pixelcnn

    with pytest.raises(ValueError, match="binary"):
        build_pixelcnn(load_data("digits", binarize=None), PixelCNNConfig())
    with pytest.raises(ValueError, match="image"):
        build_pixelcnn(load_data("moons", binarize=None), PixelCNNConfig())
    net = build_pixelcnn(load_data("digits", binarize="static"), PixelCNNConfig(channels=4, layers=1))
    assert net.shape == (8, 8)


def test_gaussian_made_learns_a_nonlinear_conditional():
    # x1 ~ N(0, 1), x2 | x1 ~ N(x1^2, 0.1^2): entropy H = 2 * 0.5 * log(2 pi e) + log 0.1 nats.
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(2000, generator=g)
    data = torch.stack([x1, x1**2 + 0.1 * torch.randn(2000, generator=g)], 1)
    made = MADE(2, hidden=(64, 64), likelihood="gaussian")
    fit(made, data, steps=400, batch_size=500, lr=1e-2, progress=False)
    entropy = math.log(2 * math.pi * math.e) + math.log(0.1)
    nll = -float(made.log_prob(data).mean())
    assert nll < entropy + 0.15
    # samples reproduce the dependence: x2 - x1^2 is small
    s = made.sample(2000)
    assert float((s[:, 1] - s[:, 0] ** 2).abs().median()) < 0.2


def test_pixelcnn_logits_on_cropped_rows_equal_full_image_logits():
    # the sampler runs the network on the rows drawn so far; that must not change any logit
    net = PixelCNN((6, 5), channels=8, num_layers=2)
    x = torch.bernoulli(torch.full((3, 30), 0.5))
    full = net(x).reshape(3, 6, 5)
    img = x.reshape(3, 1, 6, 5)
    for r in range(6):
        assert torch.allclose(net._logit_map(img[:, :, : r + 1])[:, 0, r], full[:, r], atol=1e-6)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_made_random_degrees_and_direct_connection_keep_the_autoregressive_property(likelihood):
    order = [3, 0, 5, 1, 4, 2]
    made = MADE(6, hidden=(12, 9), likelihood=likelihood, order=order, degrees="random", direct=True)
    for p in made.parameters():
        torch.nn.init.normal_(p, std=0.5)
    jac = _jacobian(made, torch.randn(6)).abs()
    pos = made.order
    allowed = pos[None, :] < pos[:, None]
    for p in range(made.num_params):
        block = jac[p * 6 : (p + 1) * 6]
        assert torch.all(block[~allowed] == 0)
        # the direct connection alone reaches every allowed input
        assert torch.all(block[allowed] > 0)


def test_made_random_degrees_follow_the_paper_and_the_seed():
    from pyro_gen.models.autoregressive import made_degrees

    order = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    degs = made_degrees(10, [400, 400], order, kind="random", generator=torch.Generator().manual_seed(1))
    assert torch.equal(degs[0], order + 1)
    for prev, layer in zip(degs[:-1], degs[1:]):
        # uniform on min(previous layer) .. D - 1: every value there is drawn, nothing outside
        assert set(layer.tolist()) == set(range(int(prev.min()), 10))
    again = made_degrees(10, [400, 400], order, kind="random", generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(degs, again))
    a = MADE(8, hidden=(16,), degrees="random", mask_seed=5)
    b = MADE(8, hidden=(16,), degrees="random", mask_seed=5)
    c = MADE(8, hidden=(16,), degrees="random", mask_seed=6)
    assert torch.equal(a.net[0].mask, b.net[0].mask) and not torch.equal(a.net[0].mask, c.net[0].mask)
    with pytest.raises(ValueError, match="degrees"):
        MADE(4, degrees="sorted")


@pytest.mark.parametrize("degrees, direct", [("random", False), ("cycle", True), ("random", True)])
def test_made_new_options_sum_to_one_over_all_binary_vectors(degrees, direct):
    made = MADE(5, hidden=(7, 6), order=[4, 2, 0, 1, 3], degrees=degrees, direct=direct, mask_seed=2)
    for p in made.parameters():
        torch.nn.init.normal_(p, std=1.0)
    total = made.log_prob(_all_binary(5)).exp().sum()
    assert abs(float(total) - 1.0) < 1e-5


def test_made_without_the_new_options_keeps_its_weight_names():
    made = MADE(4, hidden=(8,))
    assert made.direct is None
    assert sorted(made.state_dict()) == [
        "net.0.bias",
        "net.0.mask",
        "net.0.weight",
        "net.2.bias",
        "net.2.mask",
        "net.2.weight",
        "order",
    ]
    direct = MADE(4, hidden=(8,), direct=True)
    assert direct.direct.bias is None and direct.direct.mask.tolist() == [
        [0, 0, 0, 0],
        [1, 0, 0, 0],
        [1, 1, 0, 0],
        [1, 1, 1, 0],
    ]


@pytest.mark.parametrize("shape, layers", [((8, 8), 3), ((6, 5), 2)])
def test_pixelcnn_bottleneck_blocks_keep_the_receptive_field_causal(shape, layers):
    net = PixelCNN(shape, channels=8, num_layers=layers, first_kernel=7, block="bottleneck")
    assert net.config["hidden"] == 4
    d = shape[0] * shape[1]
    x = torch.bernoulli(torch.full((d,), 0.5))
    jac = _jacobian(net, x).abs()
    later_or_same = torch.arange(d)[None, :] >= torch.arange(d)[:, None]
    assert torch.all(jac[later_or_same] == 0)
    w = shape[1]
    assert all(jac[i, i - 1] > 0 for i in range(1, d) if i % w)
    assert all(jac[i, i - w] > 0 for i in range(w, d))
    # perturbing pixel d and every later one leaves the logits of pixels <= d unchanged
    xs = x[None].repeat(2, 1)
    cut = d // 2
    xs[1, cut:] = 1 - xs[1, cut:]
    out = net(xs)
    assert torch.allclose(out[0, : cut + 1], out[1, : cut + 1]) and not torch.allclose(out[0], out[1])


def test_pixelcnn_bottleneck_probabilities_sum_to_one_and_sampler_rows_agree():
    net = PixelCNN((2, 3), channels=4, num_layers=2, first_kernel=3, block="bottleneck", hidden=3)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=1.0)
    assert abs(float(net.log_prob(_all_binary(6)).exp().sum()) - 1.0) < 1e-5
    x = torch.bernoulli(torch.full((3, 6), 0.5))
    full = net(x).reshape(3, 2, 3)
    img = x.reshape(3, 1, 2, 3)
    for r in range(2):
        assert torch.allclose(net._logit_map(img[:, :, : r + 1])[:, 0, r], full[:, r], atol=1e-6)


def test_pixelcnn_default_keeps_its_weight_names_and_rejects_bad_blocks():
    net = PixelCNN((4, 4), channels=4, num_layers=1)
    assert sorted(net.state_dict()) == [
        "first.bias",
        "first.mask",
        "first.weight",
        "head.1.bias",
        "head.1.weight",
        "head.3.bias",
        "head.3.weight",
        "layers.0.bias",
        "layers.0.mask",
        "layers.0.weight",
    ]
    assert "block" not in net.config
    with pytest.raises(ValueError, match="block"):
        PixelCNN((4, 4), block="gated")
    with pytest.raises(ValueError, match="hidden"):
        PixelCNN((4, 4), hidden=3)


def test_pixelcnn_run_folder_of_the_earlier_settings_loads(tmp_path):
    # a run folder whose config.json predates the block settings loads as the plain model
    import json

    from pyro_gen.runs import load_run, run_fit

    metrics = run_fit(
        "pixelcnn", "digits", out=tmp_path, options={"channels": 4, "layers": 1}, steps=2, progress=False
    )
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("block", "hidden"):
        config["model"].pop(key)
    (tmp_path / "config.json").write_text(json.dumps(config))
    model, _ = load_run(tmp_path)
    assert isinstance(model, PixelCNN) and model.block == "conv"
    from pyro_gen.data import load_data

    test = load_data("digits", binarize="dynamic", seed=0).test
    assert abs(float(model.log_prob(test).mean()) - metrics["test_log_likelihood"]) < 1e-4


def test_made_family_run_folder_with_the_paper_masks_round_trip(tmp_path):
    from pyro_gen.data import load_data
    from pyro_gen.runs import load_run, run_fit

    options = {"hidden": "32", "order": "random", "degrees": "random", "direct": True, "mask_seed": 4}
    metrics = run_fit("made", "digits", out=tmp_path, options=options, steps=3, progress=False)
    model, config = load_run(tmp_path)
    assert config["model"]["degrees"] == "random" and model.direct is not None
    test = load_data("digits", binarize="dynamic", seed=0).test
    assert abs(float(model.log_prob(test).mean()) - metrics["test_log_likelihood"]) < 1e-4
