import gzip

import numpy as np
import pytest
import torch

from pyro_gen.data import (
    as_data_tensor,
    check_unit_interval,
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


def _tiny_mnist(directory, n=5, gz=True, labels_n=None, dotted=False, n_test=None):
    """Write the four IDX files of a tiny MNIST into ``directory``; return the train arrays."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labs = rng.integers(0, 10, size=(labels_n or n,), dtype=np.uint8)
    test_imgs = rng.integers(0, 256, size=(n_test or n, 28, 28), dtype=np.uint8)
    test_labs = rng.integers(0, 10, size=(n_test or n,), dtype=np.uint8)
    ext = ".gz" if gz else ""
    sep = "." if dotted else "-"
    write_idx(directory / f"train-images{sep}idx3-ubyte{ext}", imgs)
    write_idx(directory / f"train-labels{sep}idx1-ubyte{ext}", labs)
    write_idx(directory / f"t10k-images{sep}idx3-ubyte{ext}", test_imgs)
    write_idx(directory / f"t10k-labels{sep}idx1-ubyte{ext}", test_labs)
    return imgs, labs


@pytest.mark.parametrize("dotted", [False, True], ids=["dashed", "dotted"])
@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_round_trip_in_both_name_styles(tmp_path, gz, dotted):
    imgs, labs = _tiny_mnist(tmp_path, gz=gz, dotted=dotted, n_test=3)
    x, y = read_mnist_split(tmp_path, "train")
    assert np.array_equal(x, imgs) and np.array_equal(y, labs)
    data = load_mnist(tmp_path, binarize=None)
    assert data.name == "mnist"
    assert data.train.shape == (5, 784) and data.test.shape == (3, 784) and data.shape == (28, 28)
    assert data.train.dtype == torch.float32
    assert torch.allclose(data.train * 255, torch.from_numpy(imgs.reshape(5, -1)).float())
    assert torch.equal(data.train_labels, torch.from_numpy(labs.astype(np.int64)))
    static = load_mnist(tmp_path, binarize="static")
    assert set(static.train.unique().tolist()) <= {0.0, 1.0}


def test_idx_name_styles_and_compression_mix(tmp_path):
    """Every file may be spelled and compressed its own way; compression is read from the bytes."""
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, size=(4, 6, 5), dtype=np.uint8),
        "train-labels.idx1-ubyte": rng.integers(0, 10, size=(4,), dtype=np.uint8),
        "t10k-images.idx3-ubyte.gz": rng.integers(0, 256, size=(2, 6, 5), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=(2,), dtype=np.uint8),
    }
    for name, a in arrays.items():
        write_idx(tmp_path / name, a)
    # a raw file whose name says .gz and a compressed one whose name does not both read
    raw = tmp_path / "t10k-labels-idx1-ubyte"
    raw.rename(tmp_path / "t10k-labels-idx1-ubyte.gz")
    comp = tmp_path / "train-labels.idx1-ubyte"
    comp.write_bytes(gzip.compress(comp.read_bytes()))
    data = load_mnist(tmp_path, binarize=None)
    assert data.shape == (6, 5) and data.train.shape == (4, 30) and data.test.shape == (2, 30)
    assert data.test_labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert data.train_labels.tolist() == arrays["train-labels.idx1-ubyte"].tolist()


def test_fashion_mnist_named_from_its_folder_and_by_alias(tmp_path, monkeypatch):
    fashion = tmp_path / "Fashion_MNIST"
    _tiny_mnist(fashion, dotted=True)
    assert load_mnist(fashion).name == "fashion-mnist"
    assert load_data(f"mnist:{fashion}").name == "fashion-mnist"
    assert load_data(f"fashion-mnist:{fashion}").name == "fashion-mnist"
    plain = tmp_path / "digits-idx"
    _tiny_mnist(plain)
    assert load_data(f"mnist:{plain}").name == "mnist"
    assert load_data(f"fashion-mnist:{plain}").name == "fashion-mnist"  # the alias names the set
    # $PYRO_GEN_MNIST serves `mnist` alone; `fashion-mnist` needs its folder
    monkeypatch.setenv("PYRO_GEN_MNIST", str(fashion))
    assert load_data("mnist").name == "fashion-mnist"
    with pytest.raises(ValueError, match="fashion-mnist:PATH"):
        load_data("fashion-mnist")
    with pytest.raises(ValueError, match="name must be one of"):
        load_mnist(fashion, name="kmnist")


def test_mnist_path_from_environment(tmp_path, monkeypatch):
    _tiny_mnist(tmp_path)
    monkeypatch.setenv("PYRO_GEN_MNIST", str(tmp_path))
    assert load_data("mnist").train.shape == (5, 784)
    monkeypatch.delenv("PYRO_GEN_MNIST")
    with pytest.raises(ValueError, match="PYRO_GEN_MNIST"):
        load_mnist(None)


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    return msg


def test_idx_wrong_magic(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 40)  # dtype 0x0d (float), not ubyte
    with pytest.raises(ValueError, match="bad.idx.*magic") as e:
        read_idx(path)
    _one_line(e)
    labels = tmp_path / "labels"
    write_idx(labels, np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="labels: magic number 2049 .labels., expected 2051 .images."):
        read_idx(labels, expected_magic=2051)


def test_swapped_images_and_labels_name_the_file(tmp_path):
    _tiny_mnist(tmp_path, gz=False)
    imgs, labs = tmp_path / "train-images-idx3-ubyte", tmp_path / "train-labels-idx1-ubyte"
    a, b = imgs.read_bytes(), labs.read_bytes()
    imgs.write_bytes(b)
    labs.write_bytes(a)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: magic number 2049") as e:
        load_mnist(tmp_path)
    _one_line(e)


def test_idx_truncated_and_trailing(tmp_path):
    path = tmp_path / "x.idx"
    write_idx(path, np.zeros((4, 3, 3), dtype=np.uint8))
    raw = path.read_bytes()
    path.write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="x.idx: truncated") as e:
        read_idx(path)
    _one_line(e)
    path.write_bytes(raw[:6])
    with pytest.raises(ValueError, match="x.idx: truncated IDX header"):
        read_idx(path)
    path.write_bytes(raw[:2])
    with pytest.raises(ValueError, match="x.idx: truncated IDX file .2 bytes"):
        read_idx(path)
    path.write_bytes(raw + b"\x01\x02")
    with pytest.raises(ValueError, match="x.idx: has trailing bytes"):
        read_idx(path)
    gzpath = tmp_path / "y.idx.gz"
    gzpath.write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(ValueError, match="y.idx.gz: cannot read IDX file") as e:
        read_idx(gzpath)
    _one_line(e)
    corrupt = bytearray(gzip.compress(raw))
    corrupt[12:20] = b"\xff" * 8
    gzpath.write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match="y.idx.gz"):
        read_idx(gzpath)


def test_truncated_split_file_is_named(tmp_path):
    _tiny_mnist(tmp_path, dotted=True)
    bad = tmp_path / "t10k-images.idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:30])
    with pytest.raises(ValueError, match="t10k-images.idx3-ubyte.gz: cannot read") as e:
        load_data(f"mnist:{tmp_path}")
    _one_line(e)


def test_mnist_count_mismatch(tmp_path):
    _tiny_mnist(tmp_path, n=5, labels_n=4)
    with pytest.raises(ValueError, match="count mismatch.*5 images.*4 labels") as e:
        load_mnist(tmp_path)
    _one_line(e)


def test_missing_mnist_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope does not exist"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*train-images.idx3-ubyte"):
        load_mnist(tmp_path)
    _tiny_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="no t10k labels file") as e:
        load_mnist(tmp_path)
    _one_line(e)
    with pytest.raises(NotADirectoryError, match="not a folder"):
        load_mnist(tmp_path / "train-images-idx3-ubyte.gz")


def test_train_and_test_image_sizes_must_agree(tmp_path):
    _tiny_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((5, 27, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match="train images are 28x28 but test images 27x28"):
        load_mnist(tmp_path)


def test_bad_arrays_rejected():
    with pytest.raises(ValueError, match="x contains 1 NaN.*index \\(0, 1\\)"):
        as_data_tensor(torch.tensor([[0.0, float("nan")]]), "x")
    with pytest.raises(ValueError, match="x contains 1 NaN"):
        as_data_tensor(np.array([[0.0, np.inf]]), "x")
    with pytest.raises(ValueError, match="x is empty"):
        as_data_tensor(torch.zeros(0, 3), "x")
    with pytest.raises(ValueError, match="x is empty"):
        as_data_tensor(np.zeros((4, 0)), "x")
    with pytest.raises(ValueError, match="x must have rank 2..4 .*shape \\(3,\\)"):
        as_data_tensor(torch.zeros(3), "x")
    with pytest.raises(ValueError, match="x must have rank 2 \\(N, D\\); got shape \\(2, 2, 2\\)"):
        as_data_tensor(np.zeros((2, 2, 2)), "x", max_rank=2)
    with pytest.raises(ValueError, match="x must hold numbers.*dtype <U1"):
        as_data_tensor(np.array([["a", "b"]]), "x")
    with pytest.raises(ValueError, match="x must hold numbers.*dtype object"):
        as_data_tensor(np.array([[1, None]], dtype=object), "x")
    with pytest.raises(ValueError, match="x must hold real numbers"):
        as_data_tensor(torch.zeros(2, 2, dtype=torch.complex64), "x")
    with pytest.raises(ValueError, match="x must be a torch.Tensor or a NumPy array, got list"):
        as_data_tensor([[0.0, 1.0]], "x")


def test_float64_and_integer_arrays_become_float32():
    x64 = np.random.default_rng(0).random((5, 3))  # NumPy's default float64
    t = as_data_tensor(x64, "x")
    assert t.dtype == torch.float32 and torch.allclose(t.double(), torch.from_numpy(x64), atol=1e-7)
    assert as_data_tensor(torch.from_numpy(x64)).dtype == torch.float32
    assert as_data_tensor(np.asfortranarray(x64)[:, ::-1]).is_contiguous()
    assert as_data_tensor(x64.astype(">f8")).dtype == torch.float32  # big-endian, as IDX stores it
    pixels = np.array([[0, 128, 255]], dtype=np.uint8)
    assert as_data_tensor(pixels).tolist() == [[0.0, 128.0, 255.0]]  # values kept, never rescaled
    assert as_data_tensor(np.array([[True, False]])).tolist() == [[1.0, 0.0]]
    assert as_data_tensor(torch.ones(2, 2, dtype=torch.float16)).dtype == torch.float32
    f32 = torch.rand(4, 2)
    assert as_data_tensor(f32) is f32
    # dtype=None keeps float64 for float64 estimators; dtype=torch.float64 asks for it
    assert as_data_tensor(x64, dtype=None).dtype == torch.float64
    assert as_data_tensor(torch.from_numpy(x64), dtype=None).dtype == torch.float64
    assert as_data_tensor(pixels, dtype=None).dtype == torch.float32
    assert as_data_tensor(pixels, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="dtype must be"):
        as_data_tensor(x64, dtype=torch.int64)


def test_grey_levels_0_to_255_get_a_hint():
    with pytest.raises(ValueError, match="divide by 255"):
        check_unit_interval(as_data_tensor(np.array([[0, 128, 255]], dtype=np.uint8)), "x")
    with pytest.raises(ValueError, match="outside \\[0, 1\\]: a Bernoulli"):
        check_unit_interval(torch.tensor([[-0.5, 0.2]]), "x")


def test_fit_and_evaluate_take_a_float64_numpy_array():
    import pyro_gen as pg

    data = load_digits(binarize="static")
    x = data.train[:200].numpy().astype(np.float64)
    assert x.dtype == np.float64
    vae = pg.VAE(data.dim, latent_dim=2, hidden=(16,))
    result = pg.fit(vae, x, test_data=data.test[:50].double(), steps=4, batch_size=50, progress=False)
    assert result.steps == 4 and np.isfinite(result.history[-1]["train_elbo"])
    ev = pg.evaluate(vae, data.test[:20].numpy().astype(np.float64), k=5)
    assert np.isfinite(ev["log_likelihood"])
    with pytest.raises(ValueError, match="test_data contains 1 NaN"):
        bad = data.test[:10].double().clone()
        bad[3, 7] = float("nan")
        pg.fit(pg.VAE(data.dim, latent_dim=2, hidden=(16,)), x, test_data=bad, steps=1, progress=False)
    with pytest.raises(ValueError, match="data must hold numbers"):
        pg.fit(pg.VAE(data.dim, latent_dim=2, hidden=(16,)), x.astype(str), steps=1, progress=False)


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
