"""A linear-Gaussian VAE whose marginal likelihood is known in closed form (shared by tests)."""

import math

import torch

from pyro_gen.models import VAE


def linear_gaussian_vae(input_dim=4, latent_dim=2, noise=0.5, seed=0):
    """Return ``(vae, W, b, s)``: decoder x = W z + b + N(0, s^2 I), encoder = diagonal exact posterior."""
    torch.manual_seed(seed)
    vae = VAE(input_dim, latent_dim, hidden=(), likelihood="gaussian", gaussian_scale=noise)
    dec = vae.decoder[0]
    W, b = dec.weight.detach().clone(), dec.bias.detach().clone()
    s = torch.nn.functional.softplus(vae.raw_scale).detach()
    # exact posterior z | x ~ N(Sigma W^T (x - b) / s^2, Sigma), Sigma = (I + W^T W / s^2)^-1
    prec = torch.eye(latent_dim) + W.T @ torch.diag(1 / s**2) @ W
    sigma = torch.linalg.inv(prec)
    A = sigma @ W.T @ torch.diag(1 / s**2)
    enc = vae.encoder.net[0]
    with torch.no_grad():
        enc.weight.zero_()
        enc.bias.zero_()
        enc.weight[:latent_dim] = A
        enc.bias[:latent_dim] = -(A @ b)
        sd = sigma.diagonal().sqrt() - 1e-5
        enc.bias[latent_dim:] = sd.expm1().log()  # inverse softplus: mean-field scale
    return vae, W, b, s


def exact_log_marginal(x, W, b, s):
    """log N(x; b, W W^T + diag(s^2)) per row (nats)."""
    cov = W @ W.T + torch.diag(s**2)
    return torch.distributions.MultivariateNormal(b, covariance_matrix=cov).log_prob(x)


def closed_form_elbo(vae, x, W, b, s):
    """E_q[log p(x|z)] - KL(q || p) per row for the diagonal Gaussian guide (nats)."""
    loc, scale = vae.encode(x)
    d = x.shape[-1]
    resid = x - loc @ W.T - b
    quad = (resid**2 / s**2).sum(-1) + ((W**2) * (scale**2).unsqueeze(-2)).sum(-1).div(s**2).sum(-1)
    expected_ll = -0.5 * d * math.log(2 * math.pi) - torch.log(s).sum() - 0.5 * quad
    kl = 0.5 * (scale**2 + loc**2 - 1 - 2 * torch.log(scale)).sum(-1)
    return expected_ll - kl
