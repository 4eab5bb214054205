"""The MNIST toolkit benchmark's row list, its resume bookkeeping and its refusals (no MNIST needed)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "vae_toolkit_mnist", ROOT / "benchmarks" / "vae_toolkit_mnist.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _args(bench, tmp_path, *extra):
    """Parse the benchmark's flags the way main does, for row_settings."""
    import argparse

    ns = argparse.Namespace(
        mnist=str(tmp_path),
        epochs=5.0,
        steps=None,
        batch_size=100,
        lr=1e-3,
        seed=0,
        k=5000,
        eval_points=1000,
        kl_samples=64,
    )
    for key, value in extra:
        setattr(ns, key, value)
    return ns


def test_rows_share_the_network_and_every_bound_uses_the_same_samples(bench):
    rows = bench.row_specs("4x4", 100)
    names = [r["name"] for r in rows]
    assert names == [
        "elbo",
        "mog",
        "vamp",
        "flow",
        "iwae:16",
        "dreg:16",
        "miwae:4x4",
        "piwae:4x4",
        "ciwae:16:0.5",
        "renyi:16:0.5",
    ]
    for r in rows:
        assert {k: r["options"][k] for k in bench.BASE} == bench.BASE
    assert rows[2]["options"]["prior_components"] == 100
    assert all(r["estimator"] == "reparam" for r in rows if r["kind"] != "bound")
    assert [r["name"] for r in bench.row_specs("2x3", 10) if r["kind"] == "bound"][0] == "iwae:6"


@pytest.mark.parametrize("samples", ["16", "4x", "0x4", "1x1", "ax4"])
def test_bad_samples_are_refused_in_one_line(bench, samples):
    with pytest.raises(ValueError, match="--samples"):
        bench.row_specs(samples, 100)


def test_a_saved_row_is_found_only_with_the_same_settings(bench, tmp_path):
    spec = bench.row_specs("4x4", 100)[0]
    settings = bench.row_settings(spec, _args(bench, tmp_path))
    path = tmp_path / "r.json"
    payload = bench.load_results(path)
    assert payload == {"rows": []}
    bench.put_row(payload, {"name": "elbo", "settings": settings, "test_log_likelihood": -90.0})
    bench.save_results(path, payload)
    again = bench.load_results(path)
    assert bench.find_row(again, "elbo", settings)["test_log_likelihood"] == -90.0
    assert bench.find_row(again, "mog", settings) is None
    other = bench.row_settings(spec, _args(bench, tmp_path, ("epochs", 10.0)))
    assert bench.find_row(again, "elbo", other) is None
    # a new measurement of the same row replaces the old one
    bench.put_row(again, {"name": "elbo", "settings": other, "test_log_likelihood": -88.0})
    assert len(again["rows"]) == 1 and bench.find_row(again, "elbo", other) is not None
    assert bench.load_results(path, fresh=True) == {"rows": []}


def test_a_results_file_that_is_not_the_benchmarks_is_refused(bench, tmp_path):
    path = tmp_path / "r.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="no 'rows' list"):
        bench.load_results(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        bench.load_results(path)


def test_a_rerun_with_every_row_saved_trains_nothing(bench, tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = [
        "--mnist",
        str(tmp_path),
        "--out",
        str(out),
        "--runs",
        str(tmp_path / "runs"),
        "--rows",
        "elbo,iwae:16",
    ]
    args = _args(bench, tmp_path)
    payload = {"rows": []}
    for spec in bench.row_specs("4x4", 100):
        if spec["name"] in ("elbo", "iwae:16"):
            row = {"name": spec["name"], "kind": spec["kind"], "settings": bench.row_settings(spec, args)}
            row.update(test_log_likelihood=-90.0, test_elbo=-95.0, active_units=20, latent_dim=50, kl=25.0)
            payload["rows"].append(row)
    bench.save_results(out, payload)
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    assert "elbo: in" in printed and "iwae:16: in" in printed and "training" not in printed
    assert "| ELBO, N(0, I) (reference) | -90.00 | -95.00 | 20/50 | 25.00 |" in printed
    saved = json.loads(out.read_text())
    assert len(saved["rows"]) == 2 and "load_average_start" in saved and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--samples", "16"], "--samples"),
        (["--k", "0"], "--k must be a positive integer"),
        (["--rows", "elbo,vae"], "unknown row"),
        (["--epochs", "nan"], "--epochs must be a positive number"),
        (["--mnist", "/no/such/folder"], "is not a folder"),
    ],
)
def test_bad_flags_exit_2_with_one_line(bench, tmp_path, capsys, argv, message):
    base = ["--mnist", str(tmp_path), "--out", str(tmp_path / "r.json")]
    assert bench.main(base + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_digits_figures_read_both_result_files(bench, tmp_path):
    (tmp_path / "vae_toolkit.json").write_text(
        json.dumps({"rows": [{"row": "vae-mlp-vamp", "test_log_likelihood": -22.35}, {"row": "cvae-mlp"}]})
    )
    (tmp_path / "bounds.json").write_text(
        json.dumps({"vae": [{"name": "iwae:16", "final": {"test_log_likelihood": -22.41}}]})
    )
    assert bench.digits_figures(tmp_path) == {"vamp": -22.35, "digits:iwae:16": -22.41}
    assert bench.digits_figures(tmp_path / "absent") == {}
