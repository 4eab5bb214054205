"""Data sets as tensors: digits (embedded default), MNIST and Fashion-MNIST from local IDX files, 2-D sets,
and a user's own file (``.npy``, ``.npz``, ``.csv``, ``.pt``)."""

from __future__ import annotations

from .checks import as_data_tensor, check_unit_interval
from .digits import load_digits
from .files import TEST_FRACTION, is_data_file, load_data_file
from .mnist import MNIST_ENV, dataset_name, load_mnist, read_idx, write_idx
from .split import DataSplit
from .synthetic import (
    grid_of_gaussians,
    ring_of_gaussians,
    sample_gaussian_mixture,
    two_moons,
)

__all__ = [
    "TEST_FRACTION",
    "DataSplit",
    "as_data_tensor",
    "check_unit_interval",
    "dataset_name",
    "grid_of_gaussians",
    "load_data",
    "load_data_file",
    "load_digits",
    "is_data_file",
    "load_mnist",
    "read_idx",
    "ring_of_gaussians",
    "sample_gaussian_mixture",
    "two_moons",
    "write_idx",
]

DATA_NAMES = (
    "digits",
    "mnist:PATH",
    "fashion-mnist:PATH",
    "stacked-mnist:PATH",
    "moons",
    "ring",
    "grid",
    "PATH.npy|.npz|.csv|.pt",
)


def load_data(spec: str, binarize: str | None = None, seed: int = 0) -> DataSplit:
    """Return the data set named by ``spec`` as a :class:`DataSplit` (pixels in [0, 1]).

    ``spec`` is ``digits``, ``mnist[:PATH]``, ``fashion-mnist:PATH``, ``moons``, ``ring`` or
    ``grid``. ``mnist:PATH`` reads the IDX files in the folder PATH and names the set from
    the folder (``fashion-mnist`` when its name contains "fashion"); ``fashion-mnist:PATH``
    names it ``fashion-mnist`` whatever the folder; ``mnist`` alone reads ``$PYRO_GEN_MNIST``.
    ``stacked-mnist[:PATH]`` stacks three MNIST digits as the channels of one image (1000
    modes, :func:`~pyro_gen.data.stacked.load_stacked_mnist`; grey levels, never binarized).
    ``binarize`` applies to the other image sets. A spec ending in ``.npy``, ``.npz``, ``.csv``
    or ``.pt`` (or ``file:PATH``) is a file of the user's own data
    (:func:`~pyro_gen.data.files.load_data_file`: checked, 20% of the rows held out by ``seed``).
    """
    if is_data_file(spec) or spec.startswith("file:"):
        return load_data_file(spec.removeprefix("file:"), seed=seed, binarize=binarize)
    name, _, arg = spec.partition(":")
    if arg and name in ("digits", "moons", "ring", "grid"):
        raise ValueError(f"data set {name!r} takes no ':...' part, got {spec!r}")
    if name == "digits":
        return load_digits(binarize=binarize, seed=seed)
    if name == "mnist":
        return load_mnist(arg or None, binarize=binarize, seed=seed)
    if name == "fashion-mnist":
        if not arg:
            raise ValueError(
                f"data set 'fashion-mnist' needs its folder: fashion-mnist:PATH (${MNIST_ENV} is "
                "read for 'mnist' alone)"
            )
        return load_mnist(arg, binarize=binarize, seed=seed, name="fashion-mnist")
    if name == "stacked-mnist":
        if binarize not in (None, "none"):
            raise ValueError(f"stacked-mnist is never binarized: use --binarize none, not {binarize!r}")
        from .stacked import load_stacked_mnist

        return load_stacked_mnist(arg or None)
    if name == "moons":
        return two_moons(seed=seed)
    if name == "ring":
        return ring_of_gaussians(seed=seed)
    if name == "grid":
        return grid_of_gaussians(seed=seed)
    raise ValueError(f"unknown data set {spec!r}; choose one of {', '.join(DATA_NAMES)}")
