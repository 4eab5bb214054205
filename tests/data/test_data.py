import gzip

import numpy as np
import pytest
import torch

from pyro_gen.data import (
    as_data_tensor,
    grid_of_gaussians,
    load_data,
    load_digits,
    load_mnist,
    read_idx,
    ring_of_gaussians,
    sample_gaussian_mixture,
    two_moons,
    write_idx,
)
from pyro_gen.data.mnist import read_mnist_split


def test_digits_scaled_split_fixed_and_binarized():
    a, b = load_digits(seed=0), load_digits(seed=0)
    assert a.train.shape == (1437, 64) and a.test.shape == (360, 64)
    assert float(a.train.min()) == 0.0 and float(a.train.max()) == 1.0
    assert torch.equal(a.train, b.train) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train, load_digits(seed=1).train)
    s = load_digits(binarize="static")
    assert set(s.train.unique().tolist()) == {0.0, 1.0}
    d = load_digits(binarize="dynamic")
    assert d.batch_transform is not None
    assert set(d.test.unique().tolist()) == {0.0, 1.0}
    # dynamic binarization draws Bernoulli(p): mean over many draws -> p
    p = torch.full((20000, 1), 0.3)
    assert abs(float(d.batch_transform(p).mean()) - 0.3) < 0.01
    with pytest.raises(ValueError, match="binarize"):
        load_digits(binarize="yes")


def _tiny_mnist(directory, n=5, gz=True, labels_n=None):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labs = rng.integers(0, 10, size=(labels_n or n,), dtype=np.uint8)
    ext = ".gz" if gz else ""
    for split in ("train", "t10k"):
        write_idx(directory / f"{split}-images-idx3-ubyte{ext}", imgs)
        write_idx(directory / f"{split}-labels-idx1-ubyte{ext}", labs)
    return imgs, labs


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    imgs, labs = _tiny_mnist(tmp_path, gz=gz)
    x, y = read_mnist_split(tmp_path, "train")
    assert np.array_equal(x, imgs) and np.array_equal(y, labs)
    data = load_mnist(tmp_path, binarize=None)
    assert data.train.shape == (5, 784) and data.shape == (28, 28)
    assert torch.allclose(data.train * 255, torch.from_numpy(imgs.reshape(5, -1)).float())
    static = load_mnist(tmp_path, binarize="static")
    assert set(static.train.unique().tolist()) <= {0.0, 1.0}


def test_mnist_path_from_environment(tmp_path, monkeypatch):
    _tiny_mnist(tmp_path)
    monkeypatch.setenv("PYRO_GEN_MNIST", str(tmp_path))
    assert load_data("mnist").train.shape == (5, 784)
    monkeypatch.delenv("PYRO_GEN_MNIST")
    with pytest.raises(ValueError, match="PYRO_GEN_MNIST"):
        load_mnist(None)


def test_idx_wrong_magic(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 40)  # dtype 0x0d (float), not ubyte
    with pytest.raises(ValueError, match="bad.idx.*magic"):
        read_idx(path)
    labels = tmp_path / "labels"
    write_idx(labels, np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="expected 2051"):
        read_idx(labels, expected_magic=2051)


def test_idx_truncated_and_trailing(tmp_path):
    path = tmp_path / "x.idx"
    write_idx(path, np.zeros((4, 3, 3), dtype=np.uint8))
    raw = path.read_bytes()
    path.write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="x.idx: truncated"):
        read_idx(path)
    path.write_bytes(raw + b"\x01\x02")
    with pytest.raises(ValueError, match="trailing"):
        read_idx(path)
    gzpath = tmp_path / "y.idx.gz"
    gzpath.write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(ValueError, match="y.idx.gz"):
        read_idx(gzpath)


def test_mnist_count_mismatch(tmp_path):
    _tiny_mnist(tmp_path, n=5, labels_n=4)
    with pytest.raises(ValueError, match="count mismatch.*5 images.*4 labels"):
        load_mnist(tmp_path)


def test_missing_mnist_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_mnist(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="t10k|train"):
        load_mnist(tmp_path)


def test_bad_arrays_rejected():
    with pytest.raises(ValueError, match="NaN"):
        as_data_tensor(torch.tensor([[0.0, float("nan")]]), "x")
    with pytest.raises(ValueError, match="empty"):
        as_data_tensor(torch.zeros(0, 3), "x")
    with pytest.raises(ValueError, match="rank"):
        as_data_tensor(torch.zeros(3), "x")
    assert as_data_tensor(np.ones((2, 2), dtype=np.int64)).dtype == torch.float32


def test_synthetic_sets():
    ring = ring_of_gaussians(num_samples=4000, seed=1)
    radius = ring.train.norm(dim=1)
    assert torch.allclose(radius.mean(), torch.tensor(1.0), atol=0.01)
    assert ring.train_labels.unique().numel() == 8
    grid = grid_of_gaussians(num_samples=5000)
    assert grid.train.abs().max() < 4.5 and grid.train_labels.unique().numel() == 25
    moons = two_moons(num_samples=200, num_test=50)
    assert moons.train.shape == (200, 2) and moons.test.shape == (50, 2)
    x, z = sample_gaussian_mixture(20000, torch.tensor([[0.0, 0.0], [5.0, 5.0]]), 0.5, weights=[0.25, 0.75])
    assert abs(float(z.float().mean()) - 0.75) < 0.02
    assert torch.allclose(x[z == 1].mean(0), torch.tensor([5.0, 5.0]), atol=0.03)
    assert abs(float(x[z == 0].std()) - 0.5) < 0.02
    with pytest.raises(ValueError, match="num_samples"):
        sample_gaussian_mixture(0, torch.zeros(1, 2), 1.0)
    with pytest.raises(ValueError, match="unknown data set"):
        load_data("cifar")
