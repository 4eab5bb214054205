"""Throughput of the VAE on MNIST-shaped data: 1 vs 2 processes (DDP, gloo), GPU if present,
and importance-sampled evaluation. Data points per second, measured in one run.

    .venv/bin/python benchmarks/throughput.py --out benchmarks/results/throughput.json

Uses real MNIST from --mnist when the folder exists, otherwise random binary 784-d data
(speed does not depend on the pixel values). Every row uses the reparameterized Trace_ELBO,
because the compiled 'jit' ELBO does not run under DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ARCH = dict(latent_dim=50, hidden=(200, 200), activation="tanh")


def _data(mnist: str) -> torch.Tensor:
    from pyro_gen.data import load_mnist

    if Path(mnist).is_dir():
        return torch.bernoulli(
            load_mnist(mnist, binarize=None).train, generator=torch.Generator().manual_seed(0)
        )
    return torch.bernoulli(torch.full((60000, 784), 0.13), generator=torch.Generator().manual_seed(0))


def _train(x, steps, batch, device=None, estimator="reparam") -> float:
    from pyro_gen.inference import fit
    from pyro_gen.models import VAE

    vae = VAE(784, **ARCH)
    stamps = {}
    warm = 20

    def clock(info):
        if info.step in (warm, warm + steps):
            stamps[info.step] = time.perf_counter()

    fit(
        vae,
        x,
        steps=warm + steps,
        batch_size=batch,
        estimator=estimator,
        progress=False,
        callbacks=[clock],
        device=device,
        log_every=10**9,
    )
    return (stamps[warm + steps] - stamps[warm]) / steps


def _worker(rank, world, store, mnist, steps, batch, threads, out):
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        sec = _train(_data(mnist), steps, batch)
        t = torch.tensor([sec])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if rank == 0:
            Path(out).write_text(json.dumps({"seconds_per_step": float(t)}))
    finally:
        dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist", default="../shared/data/mnist")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=100, help="per process")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--eval-points", type=int, default=200)
    p.add_argument("--out", default="benchmarks/results/throughput.json")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    x = _data(args.mnist)
    torch.set_num_threads(cores)
    sec = _train(x, args.steps, args.batch_size)
    rows.append({"setting": f"1 process, {cores} threads, CPU", "points_per_second": args.batch_size / sec})
    for world in (2,):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "r.json")
            threads = max(1, cores // world)
            mp.spawn(
                _worker,
                args=(
                    world,
                    os.path.join(tmp, "store"),
                    args.mnist,
                    args.steps,
                    args.batch_size,
                    threads,
                    out,
                ),
                nprocs=world,
                join=True,
            )
            sec = json.loads(Path(out).read_text())["seconds_per_step"]
        rows.append(
            {
                "setting": f"{world} processes (DDP, gloo), {threads} thread(s) each, CPU",
                "points_per_second": world * args.batch_size / sec,
            }
        )
    if torch.cuda.is_available():
        sec = _train(x, args.steps, args.batch_size, device="cuda")
        rows.append(
            {
                "setting": f"1 process, GPU ({torch.cuda.get_device_name()})",
                "points_per_second": args.batch_size / sec,
            }
        )
    from pyro_gen.inference import evaluate
    from pyro_gen.models import VAE

    vae = VAE(784, **ARCH)
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        vae.to(device)
        t0 = time.perf_counter()
        evaluate(vae, x[: args.eval_points], k=args.k)
        rows.append(
            {
                "setting": f"IS evaluation k={args.k}, {device}",
                "points_per_second": args.eval_points / (time.perf_counter() - t0),
            }
        )
    print("| setting | data points / s |\n|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['points_per_second']:.0f} |")
    meta = {
        "machine": platform.machine(),
        "cpu_count": cores,
        "torch": torch.__version__,
        "batch_per_process": args.batch_size,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
