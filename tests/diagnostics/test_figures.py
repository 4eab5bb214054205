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


def test_khat_figure_of_one_global_value_stays_small_and_labelled(tmp_path, monkeypatch):
    import pyro_gen.report.diagnostics as figs

    seen = []
    original = figs.save_figure

    def save(fig, path, **kwargs):
        ax = fig.get_axes()[0]
        seen.append((ax.get_xlabel(), ax.get_ylabel(), ax.get_title(), ax.get_xlim()))
        return original(fig, path, **kwargs)

    monkeypatch.setattr(figs, "save_figure", save)
    from PIL import Image

    for k in (np.array([0.83]), np.array([0.2, np.nan, 0.9]), np.linspace(-0.2, 1.3, 500)):
        path = plot_khat(k, tmp_path / "k.png")
        with Image.open(path) as im:
            assert max(im.size) < 1000, im.size  # the threshold labels never widen the figure
    assert seen[0][0] == "one global guide" and seen[0][3] == (-1.0, 1.0)
    assert all(xl and yl and title for xl, yl, title, _ in seen)
    with pytest.raises(ValueError, match="no finite k-hat"):
        plot_khat(np.array([np.nan]), tmp_path / "none.png")


def test_activity_panel_has_readable_log_ticks(tmp_path, monkeypatch):
    import pyro_gen.report.diagnostics as figs

    counts = []
    original = figs.save_figure

    def save(fig, path, **kwargs):
        fig.canvas.draw()
        ax = fig.get_axes()[1]
        lo, hi = ax.get_ylim()
        ticks = zip(ax.get_yticks(), ax.get_yticklabels())
        counts.append(sum(1 for v, t in ticks if lo <= v <= hi and t.get_text()))
        return original(fig, path, **kwargs)

    monkeypatch.setattr(figs, "save_figure", save)
    plot_kl_per_dim([0.1, 0.2, 0.3], tmp_path / "kl.png", activity=[0.011, 0.013, 0.012])
    plot_kl_per_dim([0.1, 0.0, 0.3], tmp_path / "kl2.png", activity=[1e-6, 0.5, 2.0])
    assert counts and min(counts) >= 3, counts
