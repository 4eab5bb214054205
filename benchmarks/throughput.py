"""Throughput of the VAE on MNIST-shaped data: 1 vs 2 processes (DDP, gloo), GPU if present,
and importance-sampled evaluation. Data points per second, measured in one run.

    .venv/bin/python benchmarks/throughput.py --out benchmarks/results/throughput.json
    .venv/bin/python benchmarks/throughput.py --only eval --threads 1 --repeat 2   # the IS rows only

Uses real MNIST from --mnist when the folder exists, otherwise random binary 784-d data
(speed does not depend on the pixel values). Every row uses the reparameterized Trace_ELBO,
because the compiled 'jit' ELBO does not run under DistributedDataParallel. The IS rows time
``evaluate`` (its blocks sized by its probe, which is timed too) against a hand-written torch
loop on the same points, alternating on every 100 points, ``--repeat`` times, after a short
warm-up of both;
the ratio is ours / theirs (the first run of ours includes its block-size probe).
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
    """Seconds per training step: the difference of two runs (``warm`` and ``warm + steps``
    steps), so set-up and the first steps cancel; no callback, so losses are read back once
    per ``fit`` sync window (every 50 steps on a GPU) as in real use."""
    from pyro_gen.inference import fit
    from pyro_gen.models import VAE

    warm = 20
    seconds = []
    for n in (warm, warm, warm + steps):  # the first run only warms the process up
        torch.manual_seed(0)
        vae = VAE(784, **ARCH)
        res = fit(
            vae,
            x,
            steps=n,
            batch_size=batch,
            estimator=estimator,
            progress=False,
            device=device,
            log_every=10**9,
        )
        seconds.append(res.seconds)
    return (seconds[2] - seconds[1]) / steps


@torch.no_grad()
def _hand_written_is(vae, x: torch.Tensor, k: int, chunk: int = 64) -> torch.Tensor:
    """The reference for the IS evaluation: the same estimator written directly in torch
    (encoder once, ``chunk`` latent draws at a time, Bernoulli log-likelihood with logits)."""
    import math

    loc, scale = vae.encoder(x)
    acc = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
    done = 0
    while done < k:
        m = min(chunk, k - done)
        eps = torch.randn((m,) + loc.shape, device=x.device)
        z = loc + scale * eps
        logits = vae.decoder(z)
        log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)
        log_pz = -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        log_qz = (-0.5 * eps * eps - scale.log()).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        acc = torch.logaddexp(acc, torch.logsumexp((log_px + log_pz - log_qz).double(), 0))
        done += m
    return acc - math.log(k)


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


def _train_rows(x: torch.Tensor, args: argparse.Namespace, cores: int) -> list[dict]:
    """Training throughput: one process, compiled ELBO, two DDP processes, GPU if present."""
    rows = []
    sec = _train(x, args.steps, args.batch_size)
    rows.append({"setting": f"1 process, {cores} threads, CPU", "points_per_second": args.batch_size / sec})
    sec = _train(x, args.steps, args.batch_size, estimator="jit")
    rows.append(
        {
            "setting": f"1 process, {cores} threads, CPU, compiled ELBO (jit)",
            "points_per_second": args.batch_size / sec,
        }
    )
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
    return rows


def _is_rows(x: torch.Tensor, k: int, points: int, repeat: int) -> list[dict]:
    """IS evaluation against the hand-written loop on each device, ``repeat`` interleaved runs each."""
    from pyro_gen.evaluation import evaluate
    from pyro_gen.models import VAE

    torch.manual_seed(0)
    vae = VAE(784, **ARCH)
    rows = []
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        vae.to(device)
        xe = x[:points]
        # warm both up (first-touch allocations, lazy initialization); at k=32, so that the
        # first timed run of ours still pays for its block-size probe
        evaluate(vae, xe[:20], k=32)
        _hand_written_is(vae, xe[:20].to(device), 32)
        for rep in range(repeat):
            # alternate the two on each slice of 100 points, so that a change in the machine's
            # load falls on both
            ours = ref = 0.0
            for start in range(0, xe.shape[0], 100):
                t0 = time.perf_counter()
                ev = evaluate(vae, xe[start : start + 100], k=k)
                ours += time.perf_counter() - t0
                t0 = time.perf_counter()
                _hand_written_is(vae, xe[start : start + 100].to(device), k)
                if device == "cuda":
                    torch.cuda.synchronize()
                ref += time.perf_counter() - t0
            threads = torch.get_num_threads()
            rows.append(
                {
                    "setting": f"IS evaluation k={k}, {device}, {threads} thread(s), run {rep + 1}",
                    "points_per_second": points / ours,
                    "hand_written_points_per_second": points / ref,
                    "vs_hand_written_torch": ours / ref,
                    "blocks": {key: ev.metrics[key] for key in ev.metrics if key.startswith("block_")},
                }
            )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist", default="../shared/data/mnist")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=100, help="per process")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--eval-points", type=int, default=200)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    p.add_argument("--repeat", type=int, default=1, help="interleaved runs of each IS row")
    p.add_argument("--only", choices=("all", "train", "eval"), default="all", help="which rows to measure")
    p.add_argument("--out", default="benchmarks/results/throughput.json")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    threads = args.threads or cores
    rows = []
    x = _data(args.mnist)
    torch.set_num_threads(threads)
    if args.only in ("all", "train"):
        rows += _train_rows(x, args, threads)
    if args.only in ("all", "eval"):
        rows += _is_rows(x, args.k, args.eval_points, args.repeat)
    print("| setting | data points / s | time vs hand-written torch |\n|---|---|---|")
    for r in rows:
        ratio = f"{r['vs_hand_written_torch']:.2f}x" if "vs_hand_written_torch" in r else ""
        print(f"| {r['setting']} | {r['points_per_second']:.0f} | {ratio} |")
    meta = {
        "machine": platform.machine(),
        "cpu_count": cores,
        "threads": threads,
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "batch_per_process": args.batch_size,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
