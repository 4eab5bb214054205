"""Deterministic autoencoders, the non-probabilistic ancestors of the VAE.

An autoencoder maps ``x`` to a code ``h = f(x)`` (the encoder) and back to a reconstruction
``g(h)`` (the decoder), and is trained to minimise a reconstruction loss per data point:

* ``loss="bce"``: Bernoulli cross-entropy ``-sum_d [x_d log p_d + (1 - x_d) log(1 - p_d)]``
  with ``p = sigmoid(g(h))`` (data in [0, 1]; grey levels act as soft targets), in nats;
* ``loss="mse"``: squared error ``sum_d (x_d - g(h)_d)^2``.

The kinds differ in the regulariser (all per data point, added to the loss):

* ``plain``: none (with a code narrower than the input, an undercomplete AE);
* ``sparse``: ``weight * sum_j |h_j|``, an L1 penalty on the code;
* ``denoising`` (Vincent et al. 2008): the encoder sees a corrupted ``x~`` (masking noise:
  each input set to 0 with probability ``noise_level``; or ``noise="gaussian"``: additive
  ``N(0, noise_level^2)``), and the loss compares ``g(f(x~))`` with the *clean* ``x``;
* ``contractive`` (Rifai et al. 2011): ``weight * ||J_f(x)||_F^2``, the squared Frobenius
  norm of the encoder Jacobian ``dh/dx``, computed exactly with ``torch.func`` (``vmap`` of
  ``jacrev``), so it works for any encoder depth.

The decoder can be thrown away after training: :meth:`Autoencoder.features` returns the codes
that :func:`pyro_gen.evaluation.probe.linear_probe` scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.checks import check_unit_interval
from .nets import mlp, set_output_bias

KINDS = ("plain", "sparse", "denoising", "contractive")
LOSSES = ("bce", "mse")
NOISES = ("mask", "gaussian")
CODE_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh, "identity": nn.Identity}


class Autoencoder(nn.Module):
    """An MLP autoencoder over flattened data ``(N, input_dim)``.

    ``kind`` picks the regulariser (see the module docstring); ``weight`` scales the sparse
    or contractive penalty; ``noise``/``noise_level`` set the denoising corruption (masking
    probability nu, or Gaussian standard deviation). ``code_activation`` is applied to the
    code (``sigmoid`` as in the contractive AE paper). Losses are in nats (``bce``) or squared
    units (``mse``) per data point.
    """

    def __init__(
        self,
        input_dim: int,
        code_dim: int = 32,
        hidden: Sequence[int] = (256,),
        activation: str = "relu",
        code_activation: str = "sigmoid",
        loss: str = "bce",
        kind: str = "plain",
        weight: float = 1e-3,
        noise: str = "mask",
        noise_level: float = 0.3,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if noise not in NOISES:
            raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
        if code_activation not in CODE_ACTIVATIONS:
            raise ValueError(
                f"code_activation must be one of {sorted(CODE_ACTIVATIONS)}, got {code_activation!r}"
            )
        if input_dim <= 0 or code_dim <= 0:
            raise ValueError(f"input_dim and code_dim must be positive, got {input_dim}, {code_dim}")
        if weight < 0:
            raise ValueError(f"weight must be non-negative, got {weight}")
        if noise == "mask" and not 0.0 <= noise_level < 1.0:
            raise ValueError(f"noise_level (masking probability) must be in [0, 1), got {noise_level}")
        if noise == "gaussian" and noise_level < 0:
            raise ValueError(f"noise_level (Gaussian std) must be non-negative, got {noise_level}")
        self.input_dim, self.code_dim = int(input_dim), int(code_dim)
        self.kind, self.loss_type, self.weight = kind, loss, float(weight)
        self.noise, self.noise_level = noise, float(noise_level)
        self.config = dict(
            input_dim=input_dim,
            code_dim=code_dim,
            hidden=list(hidden),
            activation=activation,
            code_activation=code_activation,
            loss=loss,
            kind=kind,
            weight=weight,
            noise=noise,
            noise_level=noise_level,
        )
        self.encoder = nn.Sequential(
            mlp(input_dim, list(hidden), code_dim, activation), CODE_ACTIVATIONS[code_activation]()
        )
        self.decoder = mlp(code_dim, list(reversed(list(hidden))), input_dim, activation)

    # ------------------------------------------------------------------ pieces
    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` when ``x`` is not ``(N, input_dim)`` or, for ``bce``, outside [0, 1]."""
        if x.dim() != 2 or x.shape[-1] != self.input_dim:
            raise ValueError(f"{name} must have shape (N, {self.input_dim}), got {tuple(x.shape)}")
        if self.loss_type == "bce":
            check_unit_interval(x, name)

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """Return the denoising corruption of ``x`` (masking or additive Gaussian; global torch RNG)."""
        if self.noise == "mask":
            keep = torch.rand_like(x) >= self.noise_level
            return x * keep
        return x + self.noise_level * torch.randn_like(x)

    def reconstruction_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the per-point reconstruction loss ``(N,)`` of decoder outputs against ``target``."""
        if self.loss_type == "bce":
            return nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
        return (logits - target).pow(2).sum(-1)

    def contractive_penalty(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``||dh/dx||_F^2`` per point ``(N,)``: the encoder Jacobian's squared Frobenius norm.

        Exact, via ``torch.func.vmap(torch.func.jacrev(encoder))`` (one Jacobian per row);
        differentiable with respect to the encoder's parameters.
        """
        jac = torch.func.vmap(torch.func.jacrev(self.encoder))(x)  # (N, code_dim, input_dim)
        return jac.pow(2).sum((-2, -1))

    def loss_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return per-point tensors ``(N,)``: ``reconstruction``, ``penalty`` and ``loss`` (their sum).

        For ``denoising`` the encoder sees :meth:`corrupt` ``(x)`` and the reconstruction is
        scored against the clean ``x``.
        """
        inp = self.corrupt(x) if self.kind == "denoising" else x
        h = self.encoder(inp)
        rec = self.reconstruction_loss(self.decoder(h), x)
        if self.kind == "sparse":
            penalty = self.weight * h.abs().sum(-1)
        elif self.kind == "contractive":
            penalty = self.weight * self.contractive_penalty(x)
        else:
            penalty = torch.zeros_like(rec)
        return {"reconstruction": rec, "penalty": penalty, "loss": rec + penalty}

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Return the training loss averaged over the rows of ``x`` (nats or squared units per point)."""
        return self.loss_terms(x)["loss"].mean()

    # ------------------------------------------------------------------ use
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Return the codes ``(N, code_dim)`` of the rows of ``x`` (no corruption)."""
        return self.encoder(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the features a linear probe sees: the codes ``(N, code_dim)``."""
        return self.encode(x)

    @torch.no_grad()
    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Return reconstructions ``(N, input_dim)``: probabilities (``bce``) or values (``mse``)."""
        out = self.decoder(h)
        return torch.sigmoid(out) if self.loss_type == "bce" else out

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``decode(encode(x))`` for clean ``x``."""
        return self.decode(self.encode(x))

    def init_output_bias(self, data_mean: torch.Tensor) -> None:
        """Start the decoder at the data mean (its logit for ``bce``), as for the VAE."""
        link = "logit" if self.loss_type == "bce" else "identity"
        set_output_bias(self.decoder[-1].bias, data_mean, link=link)
