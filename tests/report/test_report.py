"""report(): the files of one run and of a comparison, with their content, and the caller's RNG untouched."""

import csv
import json
import math
import re

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from pyro_gen.data import DataSplit
from pyro_gen.inference.result import FitResult
from pyro_gen.report import final_quality, report, to_jsonable, write_history_csv
from pyro_gen.report.writer import COMPARISON_COLUMNS


class RecordingSampler(torch.nn.Module):
    """A 2-D model that records the draws it hands out (standard normal, or around given means)."""

    def __init__(self, means=None, std=0.05):
        super().__init__()
        self.means, self.std, self.draws = means, std, []

    def sample(self, num):
        x = torch.randn(num, 2)
        if self.means is not None:
            x = self.means[torch.randint(len(self.means), (num,))] + self.std * x
        self.draws.append(x)
        return x

    def log_prob(self, x):
        return torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)


def _svi_history(n=5):
    return [
        {
            "step": 10 * (i + 1),
            "epoch": 0.5 * (i + 1),
            "seconds": 0.25 * (i + 1),
            "cpu_seconds": 0.4 * (i + 1),
            "eval_seconds": 0.01 * i,
            "train_elbo": -100.0 + 3 * i,
            "test_elbo": (-101.0 + 3 * i) if i % 2 else None,
            "lr": 1e-3,
        }
        for i in range(n)
    ]


def _result(model=None, kind="svi", history=None, steps=50, seconds=1.25, **kw):
    return FitResult(
        model=model,
        history=_svi_history() if history is None else history,
        steps=steps,
        epochs=2.5,
        seconds=seconds,
        estimator="reparam",
        kind=kind,
        **kw,
    )


def _png(path):
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img


def _moons_split():
    g = torch.Generator().manual_seed(1)
    return DataSplit(
        name="2d", train=torch.randn(200, 2, generator=g), test=torch.randn(100, 2, generator=g), shape=(2,)
    )


def test_history_csv_round_trips_rows_like_fit_result(tmp_path):
    result = _result()
    paths = report(result, tmp_path)
    assert tmp_path / "history.csv" in paths
    with open(tmp_path / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.history)
    for row, orig in zip(rows, result.history):
        assert set(row) == set(orig)
        for k, v in orig.items():
            assert (row[k] == "") if v is None else float(row[k]) == pytest.approx(v)
    # the same bytes as FitResult.write_history, so run folders look as before
    assert (tmp_path / "history.csv").read_text() == result.write_history(tmp_path / "h2.csv").read_text()


def test_history_columns_follow_first_appearance(tmp_path):
    path = write_history_csv([{"b": 1}, {"b": 2, "a": 3}], tmp_path / "h.csv")
    assert path.read_text().splitlines() == ["b,a", "1,", "2,3"]


def test_training_curve_fits_the_kind(tmp_path):
    svi = report(_result(), tmp_path / "svi")
    assert [p.name for p in svi] == ["history.csv", "elbo.png"]
    img = _png(tmp_path / "svi" / "elbo.png")
    assert img.shape[1] > img.shape[0]  # a 6 x 4 inch figure

    loss_rows = [
        {"step": i, "epoch": i, "seconds": i, "train_loss": 10.0 - i, "test_loss": None} for i in range(4)
    ]
    loss = report(_result(kind="loss", history=loss_rows), tmp_path / "loss")
    assert [p.name for p in loss] == ["history.csv", "loss.png"]

    gan_rows = [{"step": i, "epoch": i, "seconds": i, "d_loss": 0.7, "g_loss": 0.6 + i} for i in range(4)]
    gan = report(_result(kind="adversarial", history=gan_rows), tmp_path / "gan")
    assert [p.name for p in gan] == ["history.csv", "gan_losses.png"]

    em_rows = [
        {"step": i, "epoch": i, "seconds": i, "log_likelihood": -3.0 + 1 / (i + 1), "restart": 0}
        for i in range(6)
    ]
    em = report(_result(kind="em", history=em_rows), tmp_path / "em")
    assert [p.name for p in em] == ["history.csv", "log_likelihood.png"]


def test_metrics_json_round_trips_numpy_and_torch_scalars(tmp_path):
    metrics = {
        "steps": np.int64(50),
        "test_elbo": torch.tensor(-85.25),
        "bits": np.float32(0.5),
        "converged": np.bool_(True),
        "nan": float("nan"),
        "means": np.arange(3.0),
        "seconds": 1.5,
    }
    paths = report(_result(), tmp_path, metrics=metrics)
    assert {p.name for p in paths} >= {"metrics.json", "metrics.md"}
    back = json.loads((tmp_path / "metrics.json").read_text())
    assert back == {
        "steps": 50,
        "test_elbo": -85.25,
        "bits": 0.5,
        "converged": True,
        "nan": None,
        "means": [0.0, 1.0, 2.0],
        "seconds": 1.5,
    }
    assert type(back["steps"]) is int
    md = (tmp_path / "metrics.md").read_text().splitlines()
    assert "| metric | value |" in md
    assert "| test_elbo | -85.25 |" in md and "| nan |  |" in md


def test_to_jsonable_cleans_nested_values():
    out = to_jsonable({1: (torch.tensor([1.0, 2.0]), float("inf")), "p": __import__("pathlib").Path("/x")})
    assert out == {"1": [[1.0, 2.0], None], "p": "/x"}
    json.dumps(out)


def test_comparison_table_has_each_result_and_its_ms_per_step(tmp_path):
    results = {
        "reparam": _result(steps=50, seconds=1.25, cpu_seconds=2.0, threads=2, device="cpu"),
        "score": _result(steps=40, seconds=3.0, cpu_seconds=3.0),
        "gan": _result(
            kind="adversarial",
            steps=8,
            seconds=0.5,
            history=[{"step": i, "seconds": 0.1 * i, "d_loss": 0.7, "g_loss": 0.5 + i} for i in range(1, 4)],
        ),
    }
    paths = report(results, tmp_path, title="estimators")
    assert [p.name for p in paths] == ["comparison.md", "curves.png"]
    text = (tmp_path / "comparison.md").read_text()
    assert text.startswith("# estimators")
    header = next(line for line in text.splitlines() if line.startswith("| name"))
    assert [c.strip() for c in header.strip("|").split("|")] == list(COMPARISON_COLUMNS)
    rows = {
        cells[0]: cells
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| name")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert set(rows) == set(results)
    for name, r in results.items():
        cells = dict(zip(COMPARISON_COLUMNS, rows[name]))
        assert cells["kind"] == r.kind and int(cells["steps"]) == r.steps
        assert float(cells["ms/step (wall)"]) == pytest.approx(1000 * r.seconds / r.steps, abs=0.01)
        assert float(cells["ms/step (CPU)"]) == pytest.approx(1000 * r.cpu_seconds / r.steps, abs=0.01)
    assert rows["reparam"][COMPARISON_COLUMNS.index("quality")] == "test_elbo"
    assert float(rows["reparam"][COMPARISON_COLUMNS.index("final")]) == -92.0  # last logged held-out ELBO
    assert rows["gan"][COMPARISON_COLUMNS.index("quality")] == "g_loss"
    assert float(rows["gan"][COMPARISON_COLUMNS.index("final")]) == 3.5
    _png(tmp_path / "curves.png")


def test_final_quality_prefers_held_out_and_falls_back():
    assert final_quality(_result()) == ("test_elbo", -92.0)
    train_only = [{**r, "test_elbo": None} for r in _svi_history()]
    assert final_quality(_result(history=train_only)) == ("train_elbo", -88.0)
    assert final_quality(_result(history=[])) == (None, None)


def test_empty_comparison_is_refused(tmp_path):
    with pytest.raises(ValueError, match="empty dict"):
        report({}, tmp_path)


def test_two_d_figures_use_seed_zero_and_leave_the_caller_rng_alone(tmp_path):
    data = _moons_split()
    model = RecordingSampler()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    paths = report(_result(model=model), tmp_path, data=data)
    assert torch.equal(torch.get_rng_state(), before)
    assert [p.name for p in paths] == ["history.csv", "elbo.png", "samples.png", "density.png"]
    torch.manual_seed(0)
    expected = torch.randn(2000, 2)
    assert len(model.draws) == 2  # samples.png and density.png, each from seed 0
    assert all(torch.equal(d, expected) for d in model.draws)
    density = _png(tmp_path / "density.png")
    assert density.shape[1] > 2.5 * density.shape[0]  # data | density | samples in one row
    samples = _png(tmp_path / "samples.png")
    assert samples.shape[1] > 1.5 * samples.shape[0]


def test_mode_coverage_figure_draws_with_the_run_seed(tmp_path):
    angles = torch.arange(8) * 2 * math.pi / 8
    means = torch.stack([2 * torch.cos(angles), 2 * torch.sin(angles)], 1)
    data = _moons_split()
    data.info = {"means": means.tolist(), "std": 0.05}
    model = RecordingSampler(means=means)
    metrics = {"modes_captured": 8, "num_modes": 8, "high_quality_share": 0.97, "kl_to_uniform": 0.01}
    paths = report(
        _result(model=model, kind="adversarial", history=[]), tmp_path, data=data, metrics=metrics, seed=3
    )
    assert "modes.png" in [p.name for p in paths]
    mode_draws = [d for d in model.draws if d.shape[0] == 2500]
    assert len(mode_draws) == 1
    torch.manual_seed(3 + 12345)
    assert torch.equal(mode_draws[0], RecordingSampler(means=means).sample(2500))
    img = _png(tmp_path / "modes.png")
    assert 0.7 < img.shape[1] / img.shape[0] < 1.4  # square axes
    assert json.loads((tmp_path / "metrics.json").read_text())["modes_captured"] == 8


def test_image_model_figures_and_determinism(tmp_path):
    from pyro_gen.models.vae import VAE

    g = torch.Generator().manual_seed(0)
    data = DataSplit(
        name="tiny",
        train=torch.rand(40, 16, generator=g),
        test=torch.rand(40, 16, generator=g),
        shape=(4, 4),
        test_labels=torch.arange(40) % 3,
    )
    vae = VAE(16, latent_dim=2, hidden=(8,))
    rng = torch.get_rng_state()
    names = [p.name for p in report(_result(model=vae), tmp_path / "a", data=data)]
    assert torch.equal(torch.get_rng_state(), rng)
    assert names == [
        "history.csv",
        "elbo.png",
        "samples.png",
        "reconstructions.png",
        "latent_manifold.png",
        "latent_scatter.png",
    ]
    report(_result(model=vae), tmp_path / "b", data=data)
    for name in names[1:]:
        assert np.array_equal(_png(tmp_path / "a" / name), _png(tmp_path / "b" / name)), name
    manifold = _png(tmp_path / "a" / "latent_manifold.png")
    assert abs(manifold.shape[0] - manifold.shape[1]) < 0.1 * manifold.shape[1]  # 15 x 15 grid


def test_report_returns_only_files_that_exist(tmp_path):
    paths = report(_result(model=RecordingSampler()), tmp_path, data=_moons_split(), metrics={"a": 1})
    assert paths and all(p.is_file() and p.parent == tmp_path for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    assert not re.search(r"\.tmp$", " ".join(p.name for p in tmp_path.iterdir()))


class PairSampler(RecordingSampler):
    """scikit-learn's convention: ``sample(n)`` returns ``(X, labels)``."""

    def sample(self, num):
        return super().sample(num), torch.zeros(num, dtype=torch.long)


def test_models_sampling_like_scikit_learn_get_the_same_figures(tmp_path):
    data = _moons_split()
    report(_result(model=RecordingSampler()), tmp_path / "a", data=data)
    report(_result(model=PairSampler()), tmp_path / "b", data=data)
    for name in ("samples.png", "density.png"):
        assert np.array_equal(_png(tmp_path / "a" / name), _png(tmp_path / "b" / name)), name
