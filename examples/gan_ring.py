"""GANs on PacGAN's ring of 8 Gaussians, and the two pieces of GAN theory made visible.

1. Train GANs on the ring (std 0.01) with the family's default recipe (least-squares loss,
   PacGAN2, 12,000 generator steps, batch 512, learning rates decayed linearly to 0) and
   with the non-saturating loss, and score 2,500 samples:
   modes captured, share of high-quality samples (within 3 std of a mode), KL to uniform.
2. Optimal discriminator: with a fixed affine generator p_g = N(1, 1.5^2) and data N(0, 1),
   a trained discriminator approaches D*(x) = p_data / (p_data + p_g).
3. Vanishing gradients: against a fixed generator far from the data, as the discriminator
   becomes confident the minimax generator gradient collapses while the non-saturating one
   does not.

Run:  .venv/bin/python examples/gan_ring.py [--steps 12000] [--out runs/example-gan-ring]
(about 1 minute per GAN on one CPU core, longer when it is shared; figures are PNG files in --out)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyro
import torch
from torch import nn

from pyro_gen.data import load_data
from pyro_gen.evaluation.samples import mode_metrics_for_data
from pyro_gen.experiments.gan_theory import discriminator_optimality, generator_gradient_norms
from pyro_gen.families.gan import DEFAULT_PACK, DEFAULT_STEPS, GAN_FAMILY
from pyro_gen.inference.adversarial import train_gan
from pyro_gen.models.gan import GAN, mlp_discriminator
from pyro_gen.report.gan import (
    plot_discriminator_optimality,
    plot_gan_losses,
    plot_generator_gradients,
    plot_mode_coverage,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS["ring"], help="generator steps per GAN")
    parser.add_argument("--out", default="runs/example-gan-ring")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--losses", nargs="+", default=["lsgan", "ns"], help="losses to train")
    parser.add_argument("--pack", type=int, default=DEFAULT_PACK["ring"], help="PacGAN packing")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # tiny networks: one thread is faster than two contended ones

    # 1. ring of 8 Gaussians
    data = load_data("ring", seed=args.seed)
    means = torch.tensor(data.info["means"])
    pack = args.pack
    for loss in args.losses:
        pyro.set_rng_seed(args.seed)
        gan = GAN.for_data(2, pack=pack).standardize(data.train)
        result = train_gan(
            gan,
            data.train,
            loss=loss,
            steps=args.steps,
            batch_size=GAN_FAMILY.defaults["batch_size"],
            lr=1e-3,
            lr_schedule="linear",
            eval_fn=lambda g: {
                k: v
                for k, v in mode_metrics_for_data(data, g.sample(2500)).items()
                if k in ("modes_captured", "high_quality_share", "kl_to_uniform")
            },
            eval_every=args.steps // 8,
        )
        m = mode_metrics_for_data(data, gan.sample(2500))
        print(
            f"ring, {loss}, pack {pack}: {m['modes_captured']}/8 modes, "
            f"{100 * m['high_quality_share']:.1f}% high quality, KL {m['kl_to_uniform']:.4f} nats "
            f"({result.seconds:.0f} s, {result.steps} steps)"
        )
        plot_mode_coverage(gan.sample(2500), means, data.info["std"], out / f"ring_{loss}.png", m)
        plot_gan_losses(result.history, out / f"ring_{loss}_losses.png", title=f"{loss} GAN, pack {pack}")

    # 2. D -> D* against a fixed generator
    pyro.set_rng_seed(args.seed)
    gen = nn.Linear(1, 1)
    with torch.no_grad():
        gen.weight.fill_(1.5)
        gen.bias.fill_(1.0)
    gan1d = GAN(1, 1, gen, mlp_discriminator(1, (32, 32)))
    res = discriminator_optimality(
        gan1d,
        lambda m: torch.randn(m, 1),
        lambda x: torch.distributions.Normal(0.0, 1.0).log_prob(x.squeeze(-1)),
        lambda x: torch.distributions.Normal(1.0, 1.5).log_prob(x.squeeze(-1)),
        torch.linspace(-3, 4, 141).unsqueeze(-1),
        steps=2000,
        lr=3e-3,
    )
    print(f"D vs D*: max |D - D*| = {res['max_abs_error']:.4f}, mean {res['mean_abs_error']:.4f} on [-3, 4]")
    plot_discriminator_optimality(res, out / "optimal_discriminator.png")

    # 3. minimax vs non-saturating generator gradients early in training
    pyro.set_rng_seed(args.seed)
    gan = GAN.for_data(2).standardize(data.train)
    rows = generator_gradient_norms(gan, data.train, d_steps=400, measure_every=20)
    first, last = rows[0], rows[-1]
    print(
        f"generator gradient norms at D accuracy {first['d_accuracy']:.2f} -> {last['d_accuracy']:.2f}: "
        f"minimax {first['minimax_grad_norm']:.3g} -> {last['minimax_grad_norm']:.3g}, "
        f"non-saturating {first['ns_grad_norm']:.3g} -> {last['ns_grad_norm']:.3g}"
    )
    plot_generator_gradients(rows, out / "generator_gradients.png")
    print(f"figures in {out}/")


if __name__ == "__main__":
    main()
