"""Model families, each a Pyro model/guide pair."""

from .base import DATA_PLATE, data_plate, minibatch
from .vae import VAE

__all__ = ["DATA_PLATE", "VAE", "data_plate", "minibatch"]
