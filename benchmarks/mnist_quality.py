"""Quality on real MNIST: the IWAE paper's one-stochastic-layer VAE, test log p(x) with k=5000.

Architecture (Burda et al. 2015, one stochastic layer): 784-200-200-50 encoder and mirrored
decoder, tanh, Bernoulli likelihood, dynamic binarization of the training set; the 10,000
test images are binarized once with a fixed seed. Published VAE figure: -86.76 nats after
3280 passes. Run:

    .venv/bin/python benchmarks/mnist_quality.py --mnist ../shared/data/mnist --epochs 300

Prints a table and writes JSON (default benchmarks/results/mnist_quality.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from pyro_gen.data import load_mnist
from pyro_gen.evaluation import evaluate
from pyro_gen.inference import fit
from pyro_gen.models import VAE

PUBLISHED = -86.76


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist", default="../shared/data/mnist")
    p.add_argument("--epochs", type=float, default=300)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", default="cosine", choices=["constant", "cosine", "exponential"])
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--estimator", default="jit")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--eval-points", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default="runs/mnist_quality/checkpoint.pt")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--out", default="benchmarks/results/mnist_quality.json")
    args = p.parse_args()

    data = load_mnist(args.mnist, binarize="dynamic", seed=args.seed)
    torch.manual_seed(args.seed)
    vae = VAE(784, 50, hidden=(200, 200), activation="tanh", likelihood="bernoulli")
    vae.init_output_bias(data.train.mean(0))
    steps_per_epoch = data.train.shape[0] // args.batch_size
    t0 = time.perf_counter()
    res = fit(
        vae,
        data.train,
        estimator=args.estimator,
        lr=args.lr,
        lr_schedule=args.schedule,
        warmup_steps=int(args.warmup_epochs * steps_per_epoch),
        batch_size=args.batch_size,
        epochs=args.epochs,
        test_data=data.test[:2000],
        eval_every=10 * steps_per_epoch,
        transform=data.batch_transform,
        seed=args.seed,
        checkpoint=args.checkpoint,
        checkpoint_every=steps_per_epoch,
        resume=args.checkpoint if args.resume else None,
    )
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    ev = evaluate(vae, data.test[: args.eval_points], k=args.k, progress=True)
    eval_seconds = time.perf_counter() - t1
    result = {
        "architecture": "784-200-200-50 tanh, Bernoulli, dynamic binarization",
        "epochs": res.epochs,
        "steps": res.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "schedule": args.schedule,
        "warmup_epochs": args.warmup_epochs,
        "estimator": args.estimator,
        "train_seconds": res.seconds,
        "train_wall_seconds": train_seconds,
        "test_points": ev["num_points"],
        "k": args.k,
        "test_log_likelihood": ev["log_likelihood"],
        "test_elbo": ev["elbo"],
        "published_vae_k1": PUBLISHED,
        "eval_seconds": eval_seconds,
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "history": res.history,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"| epochs | train time (s) | test log p(x), k={args.k} | test ELBO | published (3280 epochs) |")
    print("|---|---|---|---|---|")
    ll, elbo = ev["log_likelihood"], ev["elbo"]
    print(f"| {res.epochs:.0f} | {res.seconds:.0f} | {ll:.2f} | {elbo:.2f} | {PUBLISHED} |")


if __name__ == "__main__":
    main()
