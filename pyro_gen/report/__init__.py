"""Figures and tables: ``report(results, out_dir)`` writes everything a person opens.

:func:`write_run_index` and :func:`write_comparison_index` turn a run or comparison folder
into one self-contained ``index.html`` (figures embedded, readable from ``file://``).

This package is a leaf: it reads results by attribute and imports nothing from pyro_gen
above :mod:`pyro_gen.data`.
"""

from .figures import (
    image_grid,
    plot_2d_samples,
    plot_elbo_curve,
    plot_latent_manifold,
    plot_latent_scatter,
    plot_log_likelihood_curve,
    reconstruction_grid,
    save_figure,
)
from .files import markdown_table, to_jsonable, write_history_csv, write_json
from .html import markdown_to_html, write_comparison_index, write_run_index
from .writer import final_quality, report, write_metrics

__all__ = [
    "final_quality",
    "image_grid",
    "markdown_table",
    "markdown_to_html",
    "plot_2d_samples",
    "plot_elbo_curve",
    "plot_latent_manifold",
    "plot_latent_scatter",
    "plot_log_likelihood_curve",
    "reconstruction_grid",
    "report",
    "save_figure",
    "to_jsonable",
    "write_comparison_index",
    "write_history_csv",
    "write_json",
    "write_metrics",
    "write_run_index",
]
