"""Fit a VAE to the digits, estimate log p(x), and save the figures (about a minute on 2 cores)."""

from pathlib import Path

import torch

import pyro_gen as pg
from pyro_gen.evaluation import evaluate
from pyro_gen.inference import fit
from pyro_gen.report import image_grid, plot_elbo_curve, plot_latent_manifold

out = Path("runs/example-vae")
data = pg.load_data("digits", binarize="dynamic")
vae = pg.VAE(data.dim, latent_dim=2, hidden=(256,))
vae.init_output_bias(data.train.mean(0))  # start at the mean image

result = fit(
    vae,
    data.train,
    test_data=data.test,
    transform=data.batch_transform,
    estimator="jit",
    epochs=100,
    lr=3e-3,
    lr_schedule="cosine",
    seed=0,
)
metrics = evaluate(vae, data.test, k=1000)
print(
    f"test ELBO {metrics.elbo:.2f}, log p(x) {metrics.log_likelihood:.2f} nats "
    f"({metrics.bits_per_dim:.3f} bits/dim), {result.seconds:.1f} s of training"
)

plot_elbo_curve(result.history, out / "elbo.png")
plot_latent_manifold(vae.decode, data.shape, out / "manifold.png")
torch.manual_seed(0)
image_grid(vae.sample(64), out / "samples.png", data.shape)
print(f"figures in {out}/")
