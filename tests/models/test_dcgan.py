"""Stacked MNIST for the GAN family: the DCGAN pair with packing, the stacked data set, the
classifier-based mode counter and KL, and a run of the family on a tiny stacked set."""

import math

import numpy as np
import pytest
import torch

import pyro_gen.data as data_pkg
from pyro_gen.data import write_idx
from pyro_gen.data.stacked import load_stacked_mnist, stack_images
from pyro_gen.evaluation.classifier import (
    DigitClassifier,
    classify_channels,
    mode_coverage,
    modes_from_digits,
    stacked_mode_metrics,
    train_digit_classifier,
)
from pyro_gen.models.gan import GAN, DCGANCritic, DCGANGenerator, dcgan_sides, pack_samples

# ----------------------------------------------------------------------------- DCGAN networks


def test_dcgan_sides_halve_rounding_up():
    assert dcgan_sides(28) == [28, 14, 7, 4, 2]
    assert dcgan_sides(64) == [64, 32, 16, 8, 4]
    with pytest.raises(ValueError, match="side at least"):
        dcgan_sides(4)


@pytest.mark.parametrize("side", [28, 32, 17])
def test_dcgan_generator_and_critic_shapes(side):
    g = DCGANGenerator(5, channels=3, side=side, width=2)
    x = g(torch.randn(4, 5)).detach()
    assert x.shape == (4, 3 * side * side) and float(x.min()) >= 0 and float(x.max()) <= 1
    d = DCGANCritic(channels=3, side=side, width=2, pack=2)
    assert d(torch.rand(3, 2 * 3 * side * side)).shape == (3, 1)
    assert d.layers[0].in_channels == 6  # two stacked images on the channel axis


def test_dcgan_packing_puts_consecutive_samples_on_the_channel_axis():
    gan = GAN.for_data(3 * 784, (3, 28, 28), latent_dim=4, arch="dcgan", width=2, pack=2)
    assert isinstance(gan.generator, DCGANGenerator) and isinstance(gan.discriminator, DCGANCritic)
    gan.eval()
    x = torch.rand(6, 3 * 784)
    packed = pack_samples(x, 2)
    assert packed.shape == (3, 6 * 784)
    # the critic's input image: sample 2k's three channels, then sample 2k+1's
    image = packed.reshape(3, 6, 28, 28)
    torch.testing.assert_close(image[1, :3], x[2].reshape(3, 28, 28))
    torch.testing.assert_close(image[1, 3:], x[3].reshape(3, 28, 28))
    torch.testing.assert_close(gan.discriminate(x), gan.discriminator(packed).squeeze(-1))
    # swapping the two samples of a pack changes what the critic sees
    swapped = torch.cat([x[1::2, None], x[0::2, None]], 1).reshape(6, -1)
    assert not torch.allclose(gan.discriminate(x), gan.discriminate(swapped))
    assert gan.sample(5).shape == (5, 3 * 784)


def test_for_data_picks_dcgan_for_multichannel_images_and_keeps_older_choices():
    from pyro_gen.models.gan import ConvDiscriminator, ConvGenerator

    auto = GAN.for_data(3 * 784, (3, 28, 28), width=2)
    assert isinstance(auto.generator, DCGANGenerator) and auto.latent_dim == 32
    single = GAN.for_data(784, (28, 28), arch="dcgan", width=2)
    assert single.discriminator.layers[0].in_channels == 1 and single.sample(2).shape == (2, 784)
    assert isinstance(GAN.for_data(784, (28, 28), width=2).generator, ConvGenerator)
    assert isinstance(GAN.for_data(64, (8, 8), width=2).discriminator, ConvDiscriminator)
    with pytest.raises(ValueError, match="square images of 100 values"):
        GAN.for_data(100, (3, 28, 28), arch="dcgan")
    with pytest.raises(ValueError, match="needs images"):
        GAN.for_data(2, arch="dcgan")
    with pytest.raises(ValueError, match="single-channel"):
        GAN.for_data(3 * 784, (3, 28, 28), arch="conv")


def test_checkpoint_critic_reads_dcgan_packing():
    from pyro_gen.families.gan import checkpoint_critic

    gan = GAN.for_data(3 * 784, (3, 28, 28), arch="dcgan", width=2, pack=2)
    assert checkpoint_critic(gan.state_dict(), 3 * 784, channels=3) == ("dcgan", 2)
    conv = GAN.for_data(784, (28, 28), width=2, pack=3)  # the older conv critic is still read
    assert checkpoint_critic(conv.state_dict(), 784) == ("conv", 3)


# ----------------------------------------------------------------------------- mode counting


def test_uniform_modes_give_all_modes_and_zero_kl():
    m = mode_coverage(torch.arange(1000).repeat(26), 1000)
    assert m["modes_captured"] == 1000 and m["kl_to_uniform"] == pytest.approx(0.0, abs=1e-12)
    assert m["num_samples"] == 26000 and m["num_modes"] == 1000


def test_one_mode_gives_kl_log_num_modes_and_two_modes_log_half():
    m = mode_coverage(torch.full((500,), 7), 1000)
    assert m["modes_captured"] == 1 and m["kl_to_uniform"] == pytest.approx(math.log(1000))
    # two equal modes: KL = log(1000) - log(2); 3:1 -> log 1000 - H(3/4, 1/4)
    assert mode_coverage([3, 5] * 10, 1000)["kl_to_uniform"] == pytest.approx(math.log(500))
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    m = mode_coverage([1, 1, 1, 2], 1000)
    assert m["modes_captured"] == 2 and m["kl_to_uniform"] == pytest.approx(math.log(1000) - h)
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        mode_coverage([1000], 1000)
    with pytest.raises(ValueError, match="no mode labels"):
        mode_coverage([], 1000)


def test_modes_from_digits_read_in_base_ten():
    digits = torch.tensor([[1, 2, 3], [0, 0, 9], [9, 9, 9]])
    assert modes_from_digits(digits).tolist() == [123, 9, 999]
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        modes_from_digits(torch.tensor([[10, 0, 0]]))


class _MeanClassifier(DigitClassifier):
    """A stand-in classifier: the digit is the image's mean intensity times 10, rounded down."""

    def predict(self, x, batch_size=2048):
        return (x.mean(-1) * 10).floor().clamp(0, 9).long()


def test_stacked_mode_metrics_label_each_channel():
    clf = _MeanClassifier()
    clf.accuracy_ = 0.5
    digits = torch.tensor([[1, 2, 3], [4, 5, 6], [1, 2, 3]])
    images = ((digits.float() + 0.5) / 10).repeat_interleave(784, dim=1)  # channel c at level d_c
    assert classify_channels(clf, images, 3).tolist() == digits.tolist()
    m = stacked_mode_metrics(images, clf, 3)
    assert m["modes_captured"] == 2 and m["classifier_test_accuracy"] == 0.5
    assert m["kl_to_uniform"] == pytest.approx(
        math.log(1000) + (2 / 3) * math.log(2 / 3) + math.log(1 / 3) / 3
    )


def test_digit_classifier_learns_separable_images_deterministically():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    images = torch.rand(40, 784, generator=g) * 0.2
    images[labels == 1, :392] += 0.8  # class 1: a bright upper half
    a = train_digit_classifier(images, labels, epochs=10, batch_size=8, seed=3)
    b = train_digit_classifier(images, labels, epochs=10, batch_size=8, seed=3)
    assert a.accuracy_ == 1.0
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    with pytest.raises(ValueError, match="squares"):
        train_digit_classifier(torch.rand(4, 10), torch.zeros(4))


# ----------------------------------------------------------------------------- the data set


def write_tiny_mnist(folder, n_train=60, n_test=16, seed=0):
    """Write a tiny MNIST-shaped IDX folder; return its path."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    return folder


def test_stack_images_draws_labelled_channels_deterministically():
    images = np.arange(5)[:, None, None] * np.ones((5, 2, 2), dtype=np.uint8)  # image i is all i
    labels = np.array([3, 1, 4, 1, 5])
    stacked, modes, digits = stack_images(images, labels, 50, channels=3, seed=1)
    assert stacked.shape == (50, 3, 2, 2) and modes.shape == (50,) and digits.shape == (50, 3)
    drawn = stacked[:, :, 0, 0]  # which image each channel holds
    np.testing.assert_array_equal(digits, labels[drawn])
    np.testing.assert_array_equal(modes, 100 * digits[:, 0] + 10 * digits[:, 1] + digits[:, 2])
    again = stack_images(images, labels, 50, channels=3, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((stacked, modes, digits), again))
    assert not np.array_equal(stack_images(images, labels, 50, channels=3, seed=2)[0], stacked)
    with pytest.raises(ValueError, match="digits 0-9"):
        stack_images(images, labels + 6, 3)


def test_load_stacked_mnist_shape_labels_and_determinism(tmp_path):
    from pyro_gen.data.mnist import read_mnist_split

    folder = write_tiny_mnist(tmp_path / "mnist")
    data = load_stacked_mnist(folder, train_size=30, test_size=8)
    assert data.name == "stacked-mnist" and data.shape == (3, 28, 28) and not data.is_image
    assert data.train.shape == (30, 3 * 784) and data.test.shape == (8, 3 * 784)
    assert data.train.dtype == torch.float32 and 0 <= float(data.train.min()) and float(data.train.max()) <= 1
    assert data.info["num_modes"] == 1000 and data.info["channels"] == 3 and data.info["stacked"]
    # every channel is one MNIST training image, and the label reads their digits
    x, y = read_mnist_split(folder, "train")
    flat = torch.from_numpy(x.reshape(60, -1).astype(np.float32) / 255)
    for i in range(5):
        digits = []
        for c in range(3):
            block = data.train[i, 784 * c : 784 * (c + 1)]
            j = int(torch.nonzero((flat == block).all(1))[0])
            digits.append(int(y[j]))
        assert int(data.train_labels[i]) == 100 * digits[0] + 10 * digits[1] + digits[2]
    again = load_stacked_mnist(folder, train_size=30, test_size=8)
    assert torch.equal(again.train, data.train) and torch.equal(again.test_labels, data.test_labels)
    assert not torch.equal(load_stacked_mnist(folder, seed=1, train_size=30, test_size=8).train, data.train)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_stacked_mnist(tmp_path / "nope")


# ----------------------------------------------------------------------------- the family


def stacked_load_data(real):
    """``load_data`` that also reads ``stacked-mnist:PATH`` (what the data-spec parser registers)."""

    def load(spec, binarize=None, seed=0):
        name, _, arg = spec.partition(":")
        if name == "stacked-mnist":
            return load_stacked_mnist(arg or None)
        return real(spec, binarize=binarize, seed=seed)

    return load


@pytest.fixture
def stacked(tmp_path, monkeypatch):
    """``stacked-mnist:PATH`` of a tiny IDX folder (48 stacked training, 16 test images)."""
    import pyro_gen.data.stacked as stacked_module

    monkeypatch.setattr(stacked_module, "TRAIN_SIZE", 48)
    monkeypatch.setattr(stacked_module, "TEST_SIZE", 16)
    if not hasattr(data_pkg, "load_stacked_mnist"):
        monkeypatch.setattr(data_pkg, "load_data", stacked_load_data(data_pkg.load_data))
    return f"stacked-mnist:{write_tiny_mnist(tmp_path / 'mnist')}"


def test_family_trains_dcgan_on_stacked_mnist_counts_modes_and_reloads(tmp_path, stacked):
    from pyro_gen.runs import load_run, run_fit

    out = tmp_path / "run"
    options = {
        "arch": "dcgan",
        "width": 2,
        "latent_dim": 8,
        "pack": 2,
        "eval_samples": 300,
        "classifier_epochs": 1,
        "loss": "ns",
    }
    metrics = run_fit("gan", stacked, out=out, options=options, steps=2, batch_size=8, progress=False)
    assert metrics["num_modes"] == 1000 and metrics["num_samples"] == 300 == metrics["eval_samples"]
    assert 1 <= metrics["modes_captured"] <= 300
    assert 0 <= metrics["kl_to_uniform"] <= math.log(1000) + 1e-9
    assert 0 <= metrics["classifier_test_accuracy"] <= 1
    # 48 stacked training images: their modes as a floor for the sample size
    assert (
        1 <= metrics["data_modes_captured"] <= 48
        and metrics["data_kl_to_uniform"] >= math.log(1000 / 48) - 1e-9
    )
    assert metrics["estimator"] == "adversarial:ns:pack2" and metrics["steps"] == 2
    model, config = load_run(out)
    assert model.pack == 2 and isinstance(model.discriminator, DCGANCritic)
    assert config["data_info"]["shape"] == [3, 28, 28]
    assert not model.data_loc.any() and bool((model.data_scale == 1).all())  # images: not standardized
