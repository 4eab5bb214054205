"""Experiments: the targets of ``pyro-gen compare`` and research demos built on the four verbs.

* :mod:`~pyro_gen.experiments.vae`: gradient estimators on one VAE (``compare vae``);
* :mod:`~pyro_gen.experiments.discrete`: binary latents, enumeration vs score function vs
  relaxation (``compare discrete``);
* :mod:`~pyro_gen.experiments.gmm`: one Gaussian mixture by EM, SVI and NUTS (``compare gmm``);
* :mod:`~pyro_gen.experiments.families`: every model family on one table (``compare families``);
* :mod:`~pyro_gen.experiments.flow_guides`, :mod:`~pyro_gen.experiments.ica`,
  :mod:`~pyro_gen.experiments.gan_theory`: smaller studies.

Every comparison reports the same costs per method (:mod:`~pyro_gen.experiments.costs`):
training wall and CPU milliseconds per step, training seconds, evaluation seconds, threads
and device, all read from the trainer's :class:`~pyro_gen.inference.FitResult`.

This package's ``__init__`` imports no torch: ``comparisons()`` is what the command line needs.
"""

from .registry import Comparison, comparisons, register_comparison

__all__ = ["Comparison", "comparisons", "register_comparison"]
