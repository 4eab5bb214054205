"""A user's data file as a data set: every format round trips, bad files get one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyro_gen.cli import main
from pyro_gen.data import TEST_FRACTION, load_data, load_data_file


def _table(n: int = 50, d: int = 3) -> np.ndarray:
    return np.arange(n * d, dtype=np.float64).reshape(n, d) / 7.0


def _rows(split) -> set[tuple[float, ...]]:
    both = torch.cat([split.train, split.test]).double()
    return {tuple(round(v, 4) for v in row.tolist()) for row in both}


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv", ".pt"])
def test_every_format_round_trips_with_a_seeded_20_percent_split(tmp_path, suffix):
    x = _table()
    path = tmp_path / f"table{suffix}"
    if suffix == ".npy":
        np.save(path, x)
    elif suffix == ".npz":
        np.savez(path, data=x)
    elif suffix == ".csv":
        np.savetxt(path, x, delimiter=",", header="a,b,c", comments="")
    else:
        torch.save(torch.from_numpy(x), path)
    split = load_data(str(path), seed=3)
    assert split.train.dtype == torch.float32 and split.shape == (3,)
    assert split.test.shape == (round(TEST_FRACTION * 50), 3) and split.train.shape == (40, 3)
    assert _rows(split) == {tuple(round(v, 4) for v in row) for row in x.tolist()}  # nothing lost
    again, other = load_data(str(path), seed=3), load_data(str(path), seed=4)
    assert torch.equal(again.test, split.test)
    assert not torch.equal(other.test, split.test)
    assert split.info["test_fraction"] == TEST_FRACTION and split.info["file"].endswith(suffix)


def test_train_and_test_arrays_are_used_as_the_split(tmp_path):
    path = tmp_path / "split.npz"
    np.savez(path, train=np.ones((6, 2)), test=np.zeros((2, 2)))
    split = load_data_file(path)
    assert split.train.shape == (6, 2) and float(split.test.abs().sum()) == 0.0
    assert split.info["test_fraction"] is None


def test_a_vector_is_one_column_and_integers_become_floats(tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.arange(10, dtype=np.int64))
    split = load_data_file(path)
    assert split.shape == (1,) and split.train.dtype == torch.float32
    assert sorted(torch.cat([split.train, split.test]).flatten().tolist()) == list(range(10))


def _bad_files(tmp_path):
    nan = np.ones((5, 2))
    nan[3, 1] = np.nan
    inf = np.ones((5, 2))
    inf[0, 0] = np.inf
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "inf.npy", inf)
    np.save(tmp_path / "rank5.npy", np.ones((2, 1, 1, 1, 1)))
    np.save(tmp_path / "empty.npy", np.ones((0, 3)))
    np.save(tmp_path / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(tmp_path / "one.npy", np.ones((1, 3)))
    (tmp_path / "words.csv").write_text("a,b\n1,2\n3,oops\n")
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    (tmp_path / "blank.csv").write_text("")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    np.savez(tmp_path / "many.npz", a=np.ones((3, 2)), b=np.ones((3, 2)))
    return {
        "nan.npy": "NaN or infinite",
        "inf.npy": "NaN or infinite",
        "rank5.npy": "rank",
        "empty.npy": "empty",
        "strings.npy": "must hold numbers",
        "one.npy": "at least 2",
        "words.csv": "row 3, column 2 is not a number ('oops')",
        "ragged.csv": "row 2 has 1 columns",
        "blank.csv": "empty",
        "junk.pt": "cannot be read as .pt",
        "many.npz": "holds 2 arrays",
        "missing.npy": "does not exist",
    }


def test_each_bad_file_is_refused_naming_the_problem(tmp_path):
    for name, words in _bad_files(tmp_path).items():
        with pytest.raises((ValueError, FileNotFoundError), match=None) as info:
            load_data(str(tmp_path / name))
        message = str(info.value)
        assert words in message and name in message and "\n" not in message, (name, message)


def test_the_command_line_prints_one_line_with_status_2(tmp_path, capsys):
    _bad_files(tmp_path)
    model = tmp_path / "m.py"
    model.write_text(
        "import pyro, pyro.distributions as dist\n"
        "def model(x):\n"
        "    m = pyro.sample('m', dist.Normal(0., 1.))\n"
        "    with pyro.plate('data', x.shape[0]):\n"
        "        pyro.sample('x', dist.Normal(m, 1.).expand([x.shape[0], x.shape[1]]).to_event(1), obs=x)\n"
    )
    for name in ("nan.npy", "words.csv", "missing.npy"):
        rc = main(
            ["fit", "--model", f"{model}:model", "--data", str(tmp_path / name), "--out", str(tmp_path / "r")]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("pyro-gen: error: data file"), (name, err)
