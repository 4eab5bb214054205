"""Mode coverage of GANs on PacGAN's ring-8 and grid-25, per loss and packing, over several seeds.

Every run goes through the same path as ``pyro-gen fit gan --data ring|grid --loss L --pack P``
(the family's default budget unless ``--steps`` is given), then 2,500 samples are scored:
modes captured, high-quality share (within 3 std of the nearest mode), KL to uniform.
Printed beside the published numbers of PacGAN (Lin et al. 2018, Table 1, mean over 10 trials).

Run (the measured tables in docs/gan.md):
  # the family default (lsgan, PacGAN2, 12,000 steps on ring and 16,000 on grid), 5 seeds
  # (ring's default budget; the grid rows show why grid got 16,000)
  .venv/bin/python benchmarks/gan.py --losses lsgan --packs 2 --pack-losses lsgan --seeds 5 \
      --steps 12000 --out benchmarks/results/gan_default_12000.json
  .venv/bin/python benchmarks/gan.py --losses lsgan --packs 2 --pack-losses lsgan --seeds 5 \
      --data grid --out benchmarks/results/gan_default_grid.json
  # every loss and packing at a common shorter budget, 2 seeds
  .venv/bin/python benchmarks/gan.py --losses lsgan ns minimax hinge wgan-gp --packs 1 2 4 \
      --pack-losses lsgan ns --seeds 2 --steps 4000 --out benchmarks/results/gan_sweep.json
Writes one JSON per call (one record per run plus the summary table).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

# PacGAN Table 1 (mean over 10 trials; their GAN and PacGAN4 with their budget and networks)
PUBLISHED = {
    ("ring", "GAN"): {"modes": 6.3, "high_quality_pct": 98.2, "kl": 0.45},
    ("ring", "PacGAN4"): {"modes": 7.8, "high_quality_pct": 95.3, "kl": 0.07},
    ("grid", "GAN"): {"modes": 17.3, "high_quality_pct": 94.8, "kl": 0.70},
    ("grid", "PacGAN4"): {"modes": 24.8, "high_quality_pct": 94.2, "kl": 0.034},
}


def run_one(data: str, loss: str, pack: int, seed: int, steps: int | None, extra: dict | None = None) -> dict:
    """Fit one configuration through run_fit (the CLI's path); return its metrics record.

    ``extra`` holds further family options (e.g. ``{"ema": 0.999}``); ``train_seconds`` and
    ``wall_seconds`` are seconds (training only, and the whole fit with evaluation and figures).
    """
    from pyro_gen.runs import run_fit

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        # the family's own batch size, pixels and (without steps) budget, as on the command line
        m = run_fit(
            "gan",
            data,
            out=tmp,
            options={"loss": loss, "pack": pack, **(extra or {})},
            seed=seed,
            steps=steps,
            lr=1e-3,
            progress=False,
        )
        wall = time.perf_counter() - t0
    return {
        "data": data,
        "loss": loss,
        "pack": pack,
        "seed": seed,
        "steps": m["steps"],
        "modes_captured": m["modes_captured"],
        "num_modes": m["num_modes"],
        "high_quality_share": m["high_quality_share"],
        "kl_to_uniform": m["kl_to_uniform"],
        "train_seconds": m["seconds"],
        "wall_seconds": wall,
    }


def _finite(values: list[float]) -> list[float]:
    """Drop NaNs (the KL is NaN for a run without any high-quality sample)."""
    return [v for v in values if v is not None and math.isfinite(v)]


def _mean(values: list[float]) -> float | None:
    vals = _finite(values)
    return statistics.mean(vals) if vals else None


def _fmt(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    vals = [v * scale for v in _finite(values)]
    if not vals:
        return "nan"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    note = f" ({len(values) - len(vals)} nan)" if len(vals) < len(values) else ""
    return f"{statistics.mean(vals):.{digits}f} +- {sd:.{digits}f}{note}"


def _json_safe(rec: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}


def _write(args: argparse.Namespace, records: list[dict], summary: list[dict]) -> Path:
    """Write the JSON (settings, summary, one record per run; NaN as null); return its path."""
    from pyro_gen.families import gan as family

    payload = {
        "benchmark": "gan mode coverage (PacGAN ring-8 std 0.01, grid-25 std 0.05, 2,500 samples)",
        "hardware": f"{platform.processor() or platform.machine()}, torch threads {args.threads}",
        "settings": {
            "batch_size": family.GAN_FAMILY.defaults["batch_size"],
            "lr": 1e-3,
            "lr_decay": "linear to 0",
            "adam_betas": "(0.5, 0.999); wgan-gp (0.5, 0.9) with 5 critic steps",
            "networks": "MLP 3x128 generator (ReLU) and critic (LeakyReLU 0.2), latent 2, data standardized",
            "steps": args.steps or f"family default {family.DEFAULT_STEPS}",
            "ema": args.ema if args.ema is not None else family.GAN_FAMILY.defaults.get("ema"),
            "seeds": args.seeds,
            "torch_threads": args.threads,
        },
        "summary": [_json_safe(r) for r in summary],
        "published_pacgan_table1": [{"data": d, "method": n, **v} for (d, n), v in PUBLISHED.items()],
        "runs": [_json_safe(r) for r in records],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["ring", "grid"], choices=["ring", "grid"])
    parser.add_argument("--losses", nargs="+", default=["lsgan", "ns", "minimax", "wgan-gp", "hinge"])
    parser.add_argument("--packs", nargs="+", type=int, default=[1, 2])
    parser.add_argument(
        "--pack-losses", nargs="+", default=["lsgan", "ns"], help="losses also run with the packs beyond 1"
    )
    parser.add_argument("--ema", type=float, default=None, help="family --ema (default: the family's)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="generator steps (default: the family's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these nets)")
    parser.add_argument("--out", default="benchmarks/results/gan.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    configs = []
    for data in args.data:
        for loss in args.losses:
            for pack in args.packs:
                if pack == 1 or loss in args.pack_losses:
                    configs.append((data, loss, pack))
    records = []
    for data, loss, pack in configs:
        for seed in range(args.seeds):
            extra = {} if args.ema is None else {"ema": args.ema}
            rec = run_one(data, loss, pack, seed, args.steps, extra)
            records.append(rec)
            _write(args, records, [])  # keep what is done if a later run fails
            print(
                f"  {data:<4} {loss:<8} pack {pack} seed {seed}: {rec['modes_captured']}/{rec['num_modes']} "
                f"modes, HQ {100 * rec['high_quality_share']:.1f}%, KL {rec['kl_to_uniform']:.3f}, "
                f"{rec['train_seconds']:.0f} s",
                flush=True,
            )

    summary = []
    header = f"{'data':<5}{'loss':<9}{'pack':>5}{'steps':>7}  {'modes':<16}{'HQ %':<16}"
    header += f"{'KL (nats)':<18}{'s/run':>7}"
    print("\n" + header)
    print("-" * len(header))
    for data, loss, pack in configs:
        rs = [r for r in records if (r["data"], r["loss"], r["pack"]) == (data, loss, pack)]
        row = {
            "data": data,
            "loss": loss,
            "pack": pack,
            "steps": rs[0]["steps"],
            "seeds": len(rs),
            "modes_mean": statistics.mean(r["modes_captured"] for r in rs),
            "modes_min": min(r["modes_captured"] for r in rs),
            "high_quality_pct_mean": 100 * statistics.mean(r["high_quality_share"] for r in rs),
            "high_quality_pct_min": 100 * min(r["high_quality_share"] for r in rs),
            "kl_mean": _mean([r["kl_to_uniform"] for r in rs]),
            "train_seconds_mean": statistics.mean(r["train_seconds"] for r in rs),
        }
        summary.append(row)
        print(
            f"{data:<5}{loss:<9}{pack:>5}{row['steps']:>7}  "
            f"{_fmt([r['modes_captured'] for r in rs]):<16}"
            f"{_fmt([r['high_quality_share'] for r in rs], 100):<16}"
            f"{_fmt([r['kl_to_uniform'] for r in rs], 1, 3):<18}{row['train_seconds_mean']:>7.0f}"
        )
    print("\nPacGAN Table 1 (10 trials, their networks and budget):")
    for (data, name), v in PUBLISHED.items():
        print(f"  {data:<5}{name:<9} modes {v['modes']:<5} HQ {v['high_quality_pct']}%  KL {v['kl']}")

    out = _write(args, records, summary)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
