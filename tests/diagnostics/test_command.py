"""`pyro-gen diagnose RUN_DIR` on a real (tiny) VAE run folder."""

import json
from pathlib import Path

import numpy as np
import pytest

from pyro_gen.cli import main
from pyro_gen.diagnostics import load_inference_data
from pyro_gen.runs import run_fit


@pytest.fixture
def vae_run(tmp_path):
    out = tmp_path / "run"
    run_fit(
        "vae",
        "digits",
        out=out,
        options={"latent_dim": 3, "hidden": "16"},
        steps=20,
        k=20,
        progress=False,
    )
    return out


def test_diagnose_writes_inference_data_figures_and_table(vae_run, capsys):
    argv = ["diagnose", str(vae_run), "--num-points", "40", "--num-samples", "30", "--k", "100"]
    rc = main(argv + ["--gap-points", "4", "--gap-steps", "20", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    for label in ("PSIS k-hat", "IS - ELBO gap", "active units", "KL to prior", "amortization gap"):
        assert label in out
    for name in (
        "diagnostics.nc",
        "diagnostics.json",
        "diag_khat.png",
        "diag_kl_per_dim.png",
        "diag_rank.png",
        "diag_ess.png",
    ):
        assert (vae_run / name).stat().st_size > 0, name
    idata = load_inference_data(vae_run / "diagnostics.nc")
    assert {"posterior", "posterior_predictive", "log_likelihood", "observed_data", "sample_stats"} <= set(
        idata.groups()
    )
    assert idata.posterior["z"].dims == ("chain", "draw", "data", "z_dim_0")
    assert idata.posterior["z"].shape == (2, 30, 40, 3)
    summary = json.loads((vae_run / "diagnostics.json").read_text())
    assert len(summary["psis"]["khat"]) == 40
    assert summary["active_units"]["num_units"] == 3
    # the IS estimate is at least the ELBO (up to Monte Carlo noise), in nats per point
    assert summary["importance"]["log_likelihood"] >= summary["importance"]["elbo"] - 0.05
    assert np.isfinite(summary["amortization"]["amortization_gap"])
    assert summary["amortization"]["amortization_gap"] >= 0.0


def test_diagnose_errors_are_one_line(tmp_path, vae_run, capsys):
    assert main(["diagnose", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["diagnose", str(vae_run), "--k", "5"]) == 2
    assert "--k must be at least 20" in capsys.readouterr().err


def _snapshot(folder):
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_diagnose_refuses_a_model_without_latents_and_writes_nothing(tmp_path, capsys):
    made = tmp_path / "made"
    run_fit("made", "digits", out=made, options={"hidden": "16"}, steps=3, k=20, progress=False)
    before = _snapshot(made)
    capsys.readouterr()
    assert main(["diagnose", str(made), "--no-progress"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err == (
        "pyro-gen: error: the made family has no latent variables: diagnose needs a model with "
        "latent variables and a guide over them (its exact test log-likelihood is in metrics.json)"
    )
    assert "\n" not in err and captured.out == ""
    assert _snapshot(made) == before  # no figure, no InferenceData, no summary


def _figure_checks(monkeypatch):
    """Record, for every figure the diagnostics write, whether each panel has labels and a title."""
    import pyro_gen.report.diagnostics as figs

    seen = {}
    original = figs.save_figure

    def save(fig, path, **kwargs):
        titled = bool(fig._suptitle and fig._suptitle.get_text())
        seen[Path(path).name] = [
            (bool(ax.get_xlabel()), bool(ax.get_ylabel()), titled or bool(ax.get_title()))
            for ax in fig.get_axes()
            if ax.get_label() != "<colorbar>"
        ]
        return original(fig, path, **kwargs)

    monkeypatch.setattr(figs, "save_figure", save)
    return seen


def test_diagnose_figures_are_a_sane_size_and_labelled(tmp_path, monkeypatch):
    from PIL import Image

    out = tmp_path / "wide"
    options = {"latent_dim": 20, "hidden": "16"}
    run_fit("vae", "digits", out=out, options=options, steps=5, k=20, progress=False)
    seen = _figure_checks(monkeypatch)
    argv = ["diagnose", str(out), "--num-points", "8", "--num-samples", "20", "--k", "40"]
    assert main(argv + ["--gap-points", "0", "--no-progress"]) == 0
    names = ["diag_khat.png", "diag_kl_per_dim.png", "diag_rank.png", "diag_ess.png"]
    assert sorted(seen) == sorted(names)
    for name in names:
        with Image.open(out / name) as im:
            width, height = im.size
        assert 200 < width < 5000 and 200 < height < 5000, (name, im.size)
        assert seen[name] and all(all(flags) for flags in seen[name]), (name, seen[name])
    # 20 latent dimensions: the rank and ESS figures show the first 12 panels only
    assert len(seen["diag_rank.png"]) == 12 and len(seen["diag_ess.png"]) == 12


@pytest.mark.parametrize(
    ("metrics", "offers"),
    [
        ({"test_log_likelihood": -90.0, "likelihood_kind": "exact"}, "its exact test log-likelihood is in"),
        ({"modes_captured": 8, "high_quality_share": 0.9}, "its sample metrics (mode coverage, share of"),
        ({"frechet_distance": 3.2}, "its sample metrics (Frechet distance) are in"),
        ({"test_loss": 0.1}, "its test reconstruction loss is in"),
        (None, "the run folder has no readable metrics.json"),
    ],
)
def test_a_family_without_a_guide_is_told_what_it_offers(tmp_path, metrics, offers):
    from pyro_gen.diagnose import check_diagnosable

    if metrics is not None:
        (tmp_path / "metrics.json").write_text(json.dumps(metrics))

    class SamplerOnly:
        def model(self, x=None):
            return None

    with pytest.raises(ValueError, match="the gan family has no model/guide pair: diagnose needs") as e:
        check_diagnosable(SamplerOnly(), "gan", None, tmp_path)
    assert offers in str(e.value) and "\n" not in str(e.value)
