"""Small networks shared by several families."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU}


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: str = "relu") -> nn.Sequential:
    """Return an MLP ``in_dim -> hidden... -> out_dim`` with ``activation`` between layers."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    widths = [in_dim, *hidden]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(widths[-1], out_dim))
    return nn.Sequential(*layers)


class GaussianEncoder(nn.Module):
    """MLP returning ``(loc, scale)`` of a diagonal Gaussian; scale through softplus (> 0)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], latent_dim: int, activation="relu"):
        super().__init__()
        self.net = mlp(in_dim, hidden, 2 * latent_dim, activation)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the Gaussian's location and standard deviation, each ``(..., latent_dim)``."""
        h = self.net(x)
        loc, raw = h.split(self.latent_dim, dim=-1)
        return loc, nn.functional.softplus(raw) + 1e-5


def set_output_bias(
    bias: torch.Tensor,
    data_mean: torch.Tensor,
    *,
    link: str = "logit",
    eps: float = 1e-3,
    shared: bool = False,
) -> None:
    """Set an output layer's ``bias`` in place so the network starts at the data mean; returns None.

    ``link="logit"`` (Bernoulli outputs) writes ``log p - log(1 - p)`` with ``p`` the mean
    clamped to ``[eps, 1 - eps]``; ``link="identity"`` (Gaussian means) writes the mean itself.
    ``shared=True`` writes one value, the link of the overall mean (computed in float64), into
    every entry of ``bias`` (a single bias shared by all pixels). A standard initialization
    (Burda et al. 2015) that starts training at the marginal statistics instead of at 0.5.
    """
    if link not in ("logit", "identity"):
        raise ValueError(f"link must be 'logit' or 'identity', got {link!r}")
    with torch.no_grad():
        mean = data_mean.mean() if shared else data_mean
        if link == "identity":
            bias.copy_(mean)
            return
        p = mean.clamp(eps, 1 - eps)
        if shared:
            p = p.double()
        bias.copy_(torch.log(p) - torch.log1p(-p))
