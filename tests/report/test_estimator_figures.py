"""Figures of `compare vae` and the other comparisons: every panel has readable ticks and labels."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from pyro_gen.report.estimators import (
    gradient_figure,
    plot_curves,
    plot_gradient_variance,
    plot_snr,
)
from pyro_gen.report.figures import readable_log_ticks


def _record(decoder_lo, decoder_hi, encoder_lo=1e-3, encoder_hi=1e2, names=("reparam", "score", "stl")):
    """A small record of gradient summaries: per estimator, four measurement steps."""
    rng = np.random.default_rng(0)
    results = []
    for name in names:
        rows = []
        for step in (0, 50, 100, 150):
            enc = float(np.exp(rng.uniform(math.log(encoder_lo), math.log(encoder_hi))))
            dec = float(np.exp(rng.uniform(math.log(decoder_lo), math.log(decoder_hi))))
            summary = lambda v: {"total_variance": v, "snr": v, "median_snr": v, "mean_norm": 1.0}  # noqa: E731
            rows.append({"step": step, "encoder": summary(enc), "decoder": summary(dec)})
        results.append({"name": name, "variance": rows})
    return results


def _labelled_ticks(ax, axis="y"):
    """The non-empty tick labels of ``ax`` whose ticks lie within the view (after a draw)."""
    lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
    target = ax.yaxis if axis == "y" else ax.xaxis
    tol = 1e-9 * (hi - lo)
    labels = []
    for tick in target.get_major_ticks():
        v = tick.get_loc()
        if lo - tol <= v <= hi + tol and tick.label1.get_visible() and tick.label1.get_text():
            labels.append(tick.label1.get_text())
    minor = [t.get_text() for t in target.get_minorticklabels() if t.get_text()]
    return labels, minor


# decoder spans: a factor 1.3 (the case that left one label), well under a decade, about a
# decade straddling two powers of ten, and several decades
SPANS = [(1.0, 1.3), (0.5, 0.8), (0.3, 4.0), (2e-5, 3e1), (0.97, 1.0)]


@pytest.mark.parametrize("field", ["total_variance", "snr"])
@pytest.mark.parametrize("span", SPANS, ids=[f"{a:g}-{b:g}" for a, b in SPANS])
def test_every_gradient_panel_has_three_labelled_ticks_and_labels(field, span):
    fig = gradient_figure(_record(*span), field)
    try:
        fig.canvas.draw()
        axes = fig.get_axes()
        assert len(axes) == 2
        assert fig._suptitle is not None and fig._suptitle.get_text()
        for ax, group in zip(axes, ("encoder", "decoder")):
            labels, minor = _labelled_ticks(ax)
            assert len(labels) >= 3, (group, span, labels)
            assert len(set(labels)) == len(labels), labels  # no two ticks read the same
            assert minor == []  # minor ticks unlabelled: no overlapping text
            assert ax.get_yscale() == "log"
            assert ax.get_xlabel() == "optimizer steps"
            assert ax.get_ylabel().startswith("gradient SNR" if field == "snr" else "total gradient variance")
            assert "(" in ax.get_ylabel()  # the unit
            assert ax.get_title() == f"{group} parameters"
    finally:
        plt.close(fig)


def test_panel_without_finite_measurements_says_so():
    results = _record(1.0, 2.0)
    for row in results[0]["variance"] + results[1]["variance"] + results[2]["variance"]:
        row["decoder"]["snr"] = float("nan")
    fig = gradient_figure(results, "snr")
    try:
        fig.canvas.draw()
        dec = fig.get_axes()[1]
        assert any(t.get_text() == "no finite measurements" for t in dec.texts)
        assert len(_labelled_ticks(dec)[0]) >= 3
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="field must be one of"):
        gradient_figure(results, "variance")


def test_written_variance_and_snr_figures(tmp_path):
    from PIL import Image

    results = _record(1.0, 1.3)
    before = set(plt.get_fignums())  # figures other tests left open are not this test's
    for path in (plot_gradient_variance(results, tmp_path / "v.png"), plot_snr(results, tmp_path / "s.png")):
        with Image.open(path) as im:
            assert 400 < im.size[0] < 3000 and 200 < im.size[1] < 2000, im.size
    assert set(plt.get_fignums()) <= before  # closed after writing


def test_log_time_axis_of_curves_is_readable(tmp_path, monkeypatch):
    import pyro_gen.report.estimators as est

    seen = {}
    original = est.save_figure

    def save(fig, path, **kwargs):
        fig.canvas.draw()
        ax = fig.get_axes()[0]
        seen["x"] = _labelled_ticks(ax, "x")[0]
        seen["labels"] = (ax.get_xlabel(), ax.get_ylabel(), ax.get_title())
        return original(fig, path, **kwargs)

    monkeypatch.setattr(est, "save_figure", save)
    history = [{"step": i, "seconds": 2.0 + 0.1 * i, "test_elbo": -100.0 + i} for i in range(10)]
    plot_curves(
        [{"name": "a", "history": history}], tmp_path / "c.png", y="test_elbo", x="seconds",
        ylabel="held-out ELBO (nats per data point)", title="t", xscale="log",
    )
    assert len(seen["x"]) >= 3, seen["x"]
    assert all(seen["labels"])


def test_readable_log_ticks_leaves_linear_axes_alone():
    fig, ax = plt.subplots()
    try:
        ax.plot([1, 2], [1, 2])
        assert readable_log_ticks(ax, "y") == 0
        ax.set_yscale("log")
        ax.set_ylim(10.0, 10.5)
        assert readable_log_ticks(ax, "y") >= 3
        with pytest.raises(ValueError, match="axis must be"):
            readable_log_ticks(ax, "z")
    finally:
        plt.close(fig)
