"""Tables and figures written to a run folder."""

from .figures import (
    image_grid,
    plot_2d_samples,
    plot_elbo_curve,
    plot_latent_manifold,
    plot_latent_scatter,
    reconstruction_grid,
)
from .files import write_json

__all__ = [
    "image_grid",
    "plot_2d_samples",
    "plot_elbo_curve",
    "plot_latent_manifold",
    "plot_latent_scatter",
    "reconstruction_grid",
    "write_json",
]
