"""Overhead of ``fit`` against a hand-written PyTorch VAE step (same network, batch, optimizer).

For a digits-sized net (64-256-16) and an MNIST-sized net (784-400-50), batch 128, Adam 1e-3,
each method trains the same architecture for ``--warmup`` + ``--steps`` steps; methods are
interleaved over ``--reps`` repetitions, each step is timed on its own and the median per-step
wall time (robust to the load spikes of a shared machine) is reported with its ratio to the
hand-written PyTorch loop (torch's default Adam) measured in the same run; the same loop
with torch's fused Adam, which ``fit`` uses, is shown beside it. ``fit, default`` is ``fit``
with no estimator given. Run (one torch thread, the setting the default ``fit`` picks for these nets):

    .venv/bin/python benchmarks/overhead.py --threads 1 --out benchmarks/results/overhead_1thread.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import pyro
import pyro.infer as infer
import pyro.optim
import torch
from torch.nn import functional as F

from pyro_gen.inference import fit
from pyro_gen.models import VAE

CONFIGS = {"digits 64-256-16": (64, 256, 16), "MNIST 784-400-50": (784, 400, 50)}


def make_vae(d, h, z, seed=0):
    torch.manual_seed(seed)
    return VAE(d, z, hidden=(h,))


def torch_reference(
    vae: VAE, x: torch.Tensor, batch: int, warmup: int, steps: int, fused: bool | None = None
) -> float:
    """Hand-written loop: shuffle, slice, encoder, rsample, decoder, BCE + analytic KL, Adam.

    The loss is the negative ELBO per data point (as ``fit``'s); returns the median wall
    seconds of the ``steps`` steps after ``warmup``, each timed from the batch slice to the
    logged loss.
    """
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3, fused=fused)
    n = x.shape[0]
    perm, pos = torch.randperm(n), 0
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        if pos + batch > n:
            perm, pos = torch.randperm(n), 0
        xb = x[perm[pos : pos + batch]]
        pos += batch
        loc, scale = vae.encoder(xb)
        zs = loc + scale * torch.randn_like(loc)
        rec = F.binary_cross_entropy_with_logits(vae.decoder(zs), xb, reduction="sum")
        kl = 0.5 * (scale**2 + loc**2 - 1 - 2 * scale.log()).sum()
        loss = (rec + kl) / batch
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()  # what a training loop logs
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ours(vae: VAE, x: torch.Tensor, batch: int, warmup: int, steps: int, estimator: str | None) -> float:
    """pyro_gen.fit (``estimator=None``: its default); the median of the engine's own per-step wall times.

    The engine times each step around the objective's step (batch, loss, backward, update,
    the loss read back and checked).
    """
    kwargs = {} if estimator is None else {"estimator": estimator}
    res = fit(
        vae,
        x,
        batch_size=batch,
        steps=warmup + steps,
        lr=1e-3,
        progress=False,
        seed=None,
        log_every=10**9,
        threads=torch.get_num_threads(),
        **kwargs,
    )
    return res.step_ms["median"] / 1e3  # over all steps: the few compiling ones do not move a median


def plain_pyro(vae: VAE, x: torch.Tensor, batch: int, warmup: int, steps: int, jit: bool) -> float:
    """What a user writes with Pyro alone: SVI + (Jit)Trace_ELBO + pyro.optim.Adam, pyro.module."""
    pyro.clear_param_store()

    def model(xb):
        pyro.module("vae", vae)
        with pyro.plate("data", n, subsample=torch.arange(xb.shape[0])):
            z = pyro.sample("z", vae.prior())
            pyro.sample("x", vae.likelihood_dist(z), obs=xb)

    def guide(xb):
        pyro.module("vae", vae)
        with pyro.plate("data", n, subsample=torch.arange(xb.shape[0])):
            loc, scale = vae.encoder(xb)
            pyro.sample("z", pyro.distributions.Normal(loc, scale).to_event(1))

    n = x.shape[0]
    elbo = infer.JitTrace_ELBO() if jit else infer.Trace_ELBO()
    svi = infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), elbo)
    perm, pos = torch.randperm(n), 0
    times = []
    with pyro.validation_enabled(False):
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            if pos + batch > n:
                perm, pos = torch.randperm(n), 0
            svi.step(x[perm[pos : pos + batch]])
            pos += batch
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--out", default="benchmarks/results/overhead.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    methods = {
        "hand-written torch": lambda v, x: torch_reference(v, x, args.batch_size, args.warmup, args.steps),
        "hand-written torch, fused Adam": lambda v, x: torch_reference(
            v, x, args.batch_size, args.warmup, args.steps, fused=True
        ),
        "fit, default (auto)": lambda v, x: ours(v, x, args.batch_size, args.warmup, args.steps, None),
        "fit, jit (compiled Trace_ELBO)": lambda v, x: ours(
            v, x, args.batch_size, args.warmup, args.steps, "jit"
        ),
        "fit, reparam (Trace_ELBO)": lambda v, x: ours(
            v, x, args.batch_size, args.warmup, args.steps, "reparam"
        ),
        "fit, analytic-kl": lambda v, x: ours(v, x, args.batch_size, args.warmup, args.steps, "analytic-kl"),
        "plain Pyro SVI + Trace_ELBO": lambda v, x: plain_pyro(
            v, x, args.batch_size, args.warmup, args.steps, False
        ),
        "plain Pyro SVI + JitTrace_ELBO": lambda v, x: plain_pyro(
            v, x, args.batch_size, args.warmup, args.steps, True
        ),
    }
    results = {}
    for cname, (d, h, z) in CONFIGS.items():
        x = torch.bernoulli(
            torch.rand(10000 if d > 100 else 1437, d, generator=torch.Generator().manual_seed(0))
        )
        times = {m: [] for m in methods}
        for _ in range(args.reps):
            for m, f in methods.items():
                times[m].append(f(make_vae(d, h, z), x))
        ref = statistics.median(times["hand-written torch"])
        results[cname] = {
            m: {
                "ms_per_step": 1e3 * statistics.median(t),
                "ratio": statistics.median(t) / ref,
                "all_ms": [1e3 * v for v in t],
            }
            for m, t in times.items()
        }
    print(f"| method | {' | '.join(f'{c} ms/step (ratio)' for c in CONFIGS)} |")
    print("|---|" + "---|" * len(CONFIGS))
    for m in methods:
        cells = [f"{results[c][m]['ms_per_step']:.3f} ({results[c][m]['ratio']:.2f}x)" for c in CONFIGS]
        print(f"| {m} | {' | '.join(cells)} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "machine": platform.machine(),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "reps": args.reps,
    }
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
