"""`pyro-gen fit ebm` and `pyro-gen sample` on an EBM run, and the EBM's one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pyro_gen.cli import main

TINY = [
    "--hidden",
    "8",
    "--buffer-size",
    "64",
    "--sample-steps",
    "5",
    "--eval-samples",
    "50",
    "--no-progress",
]


def test_fit_ebm_on_moons_is_scored_exactly_by_quadrature_then_sampled(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["fit", "ebm", "--data", "moons", "--steps", "3", "--batch-size", "64", "--quad-cell", "0.05"]
    assert main([*args, *TINY, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["likelihood_kind"] == "exact-by-quadrature" and metrics["steps"] == 3
    assert math.isfinite(metrics["test_log_likelihood"]) and metrics["quadrature_edge_mass"] < 1e-6
    assert metrics["test_bits_per_dim"] == pytest.approx(-metrics["test_log_likelihood"] / (2 * math.log(2)))
    for name in ("checkpoint.pt", "config.json", "history.csv", "loss.png", "samples.png", "density.png"):
        assert (out / name).is_file(), name
    npy = tmp_path / "s.npy"
    assert main(["sample", str(out), "--num", "7", "--out", str(npy)]) == 0
    assert np.load(npy).shape == (7, 2) and np.isfinite(np.load(npy)).all()


@pytest.mark.parametrize("binarize", ["none", "dynamic"])
def test_fit_ebm_on_digits_estimates_log_z_by_ais(tmp_path, binarize):
    out = tmp_path / "img"
    args = [
        "fit",
        "ebm",
        "--data",
        "digits",
        "--net",
        "mlp",
        "--steps",
        "2",
        "--batch-size",
        "32",
        "--binarize",
        binarize,
    ]
    ais = ["--ais-steps", "3", "--ais-chains", "4", "--ais-runs", "2", "--dequant-samples", "1"]
    assert main([*args, *TINY, *ais, "--eval-points", "20", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["likelihood_kind"] == "estimate" and len(metrics["log_z_runs"]) == 2
    levels = 17 if binarize == "none" else 2
    assert metrics["num_levels"] == levels and math.isfinite(metrics["test_bits_per_dim"])
    assert metrics["frechet_distance"] > 0
    npy = tmp_path / "d.npy"
    assert main(["sample", str(out), "--num", "3", "--out", str(npy)]) == 0
    arr = np.load(npy)
    assert arr.shape == (3, 8, 8) and np.allclose(arr * (levels - 1), np.round(arr * (levels - 1)))


def test_a_method_or_network_the_data_cannot_take_is_refused_in_one_line(tmp_path, capsys):
    assert (
        main(["fit", "ebm", "--data", "moons", "--net", "conv", "--steps", "1", "--out", str(tmp_path / "a")])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("pyro-gen: error:") and "--net conv needs image data" in err and "\n" not in err
    bad = ["fit", "ebm", "--data", "digits", "--method", "nce", "--noise", "flow", "--steps", "1"]
    assert main([*bad, "--out", str(tmp_path / "b")]) == 2
    assert "--noise flow is for vector data" in capsys.readouterr().err
    assert (
        main(["fit", "ebm", "--data", "moons", "--tau", "0", "--steps", "1", "--out", str(tmp_path / "c")])
        == 2
    )
    assert "--tau must be a positive number" in capsys.readouterr().err
    assert (
        main(
            ["fit", "ebm", "--data", "moons", "--sigma", "0.2", "--steps", "1", "--out", str(tmp_path / "d")]
        )
        == 2
    )
    assert "--sigma is a setting of --method dsm, not of --method pcd" in capsys.readouterr().err


def test_multi_noise_dsm_fits_samples_and_reloads_its_noise_conditional_energy(tmp_path, capsys):
    import torch

    from pyro_gen.runs import load_run

    out = tmp_path / "run"
    args = ["fit", "ebm", "--data", "moons", "--method", "dsm", "--num-sigmas", "3", "--sigma", "0.05"]
    tiny = [t for t in TINY if t not in ("--buffer-size", "64")]
    assert (
        main([*args, "--steps", "3", "--batch-size", "64", "--quad-cell", "0.05", *tiny, "--out", str(out)])
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        math.isfinite(metrics["test_log_likelihood"]) and metrics["likelihood_kind"] == "exact-by-quadrature"
    )
    model, _ = load_run(out)
    assert torch.allclose(model.net.sigmas, torch.tensor([1.0, 0.05**0.5, 0.05]))
    z = torch.randn(4, 2)
    assert torch.allclose(
        model.energy_z(z), model.energy_z(z, 0.05)
    )  # the model's density: the smallest level
    npy = tmp_path / "s.npy"
    assert main(["sample", str(out), "--num", "5", "--out", str(npy)]) == 0
    assert np.load(npy).shape == (5, 2) and np.isfinite(np.load(npy)).all()
    capsys.readouterr()
    bad = ["fit", "ebm", "--data", "moons", "--num-sigmas", "4", "--steps", "1", "--out", str(tmp_path / "e")]
    assert main(bad) == 2
    assert "--num-sigmas is a setting of --method dsm, not of --method pcd" in capsys.readouterr().err
    bad = ["fit", "ebm", "--data", "moons", "--method", "dsm", "--num-sigmas", "4", "--sigma-max", "0.05"]
    assert main([*bad, "--steps", "1", "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "--sigma-max (0.05) must exceed --sigma (0.1)" in err and "\n" not in err.strip()


def test_nce_noise_defaults_to_a_flow_on_vectors_and_a_mixture_on_images():
    from pyro_gen.data import load_data
    from pyro_gen.families.ebm import EBMConfig, build_ebm
    from pyro_gen.models.ebm import MixtureNoise

    cfg = EBMConfig(method="nce")
    assert cfg.noise == "auto"
    vectors = build_ebm(load_data("moons"), cfg, fit_noise=False)
    assert not isinstance(vectors.noise, MixtureNoise) and hasattr(vectors.noise, "log_prob")
    images = build_ebm(load_data("digits"), cfg, fit_noise=False)
    assert isinstance(images.noise, MixtureNoise)
