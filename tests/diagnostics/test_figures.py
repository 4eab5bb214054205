"""Diagnostic figures: each writes a non-empty PNG; bad options raise ValueError."""

import arviz as az
import numpy as np
import pytest

from pyro_gen.report.diagnostics import plot_ess, plot_khat, plot_kl_per_dim, plot_rank


def _png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_figures_are_png_files(tmp_path):
    rng = np.random.default_rng(0)
    idata = az.from_dict(
        posterior={"theta": rng.normal(size=(2, 100))},
        log_likelihood={"y": rng.normal(-1.0, 0.1, size=(2, 100, 8))},
    )
    assert _png(plot_rank(idata, tmp_path / "rank.png"))
    assert _png(plot_rank(idata, tmp_path / "trace.png", kind="trace"))
    assert _png(plot_ess(idata, tmp_path / "ess.png"))
    assert _png(plot_khat(np.array([0.1, 0.6, 0.9]), tmp_path / "khat.png"))
    loo = az.loo(idata, pointwise=True)
    assert _png(plot_khat(loo, tmp_path / "khat_loo.png"))
    assert _png(plot_kl_per_dim([0.0, 1.2, 0.5], tmp_path / "kl.png", activity=[0.0, 0.9, 0.02]))
    with pytest.raises(ValueError, match="kind"):
        plot_rank(idata, tmp_path / "x.png", kind="violin")
