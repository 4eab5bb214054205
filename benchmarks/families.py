"""The family tree on one machine: the one-table comparison, autoencoder probes, and ICA.

Three parts, each printed as a table and written together as JSON:

1. ``compare families`` on digits (binarized): test NLL in bits/dim (exact / bound /
   estimate), classifier-feature Frechet distance of samples, linear-probe accuracy and
   training seconds; speed as the ratio of each family's training time to MADE's, measured
   in the same run.
2. Linear probes on encoder features: the four autoencoder kinds and a VAE's encoder means,
   each trained for the same number of epochs, against the raw-pixel probe; training time as
   a ratio to the plain autoencoder's.
3. ICA on synthetic mixtures (3 sources, 2000 points, Laplace and logistic): Amari distance
   to the true mixing matrix for maximum likelihood, SVI (noisy ICA) and scikit-learn's
   FastICA; time as a ratio to FastICA's.

Run (about 10-20 minutes on a shared 2-core CPU with ``--budget quick``):

    .venv/bin/python benchmarks/families.py --budget quick --out benchmarks/results/families.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from pyro_gen.data import load_data
from pyro_gen.evaluation.probe import probe_split
from pyro_gen.experiments.families import compare_families
from pyro_gen.experiments.ica import compare_ica
from pyro_gen.inference import fit
from pyro_gen.inference.loss import train_autoencoder
from pyro_gen.models import VAE
from pyro_gen.models.autoencoders import Autoencoder

AE_SETTINGS = {
    "plain": {},
    "sparse": {"weight": 1e-2, "code_activation": "relu"},
    "denoising": {"noise": "mask", "noise_level": 0.3},
    "contractive": {"weight": 0.1},
}


def family_table(args) -> dict:
    res = compare_families(
        "digits",
        args.report,
        budget=args.budget,
        k=args.k,
        num_samples=args.num_samples,
        seed=args.seed,
        progress=False,
        reuse=args.reuse,
    )
    ref = next((r["train_seconds"] for r in res["rows"] if r["family"] == "made"), None)
    print(f"\n== families on digits (binarized, budget {args.budget}); time ratio vs MADE ==")
    print(f"{'family':<12} {'bits/dim':>9} {'NLL is':>9} {'FD':>8} {'probe':>6} {'train s':>8} {'ratio':>6}")
    for r in res["rows"]:
        r["time_ratio_vs_made"] = r["train_seconds"] / ref if ref else None
        bpd = "-" if r["test_bits_per_dim"] is None else f"{r['test_bits_per_dim']:.4f}"
        fd = "-" if r["frechet_distance"] is None else f"{r['frechet_distance']:.2f}"
        pr = "-" if r["probe_accuracy"] is None else f"{r['probe_accuracy']:.3f}"
        ratio = "-" if r["time_ratio_vs_made"] is None else f"{r['time_ratio_vs_made']:.2f}"
        kind = r["likelihood_kind"] or "-"
        print(f"{r['family']:<12} {bpd:>9} {kind:>9} {fd:>8} {pr:>6} {r['train_seconds']:>8.1f} {ratio:>6}")
    print("floor:", {k: round(v, 3) for k, v in res["floor"].items()}, "skipped:", res["skipped"])
    return {"rows": res["rows"], "floor": res["floor"], "skipped": res["skipped"]}


def probe_table(args) -> dict:
    data = load_data("digits", binarize="dynamic", seed=args.seed)
    rows = {}
    raw = probe_split(None, data, seed=args.seed)["accuracy"]
    for kind, extra in AE_SETTINGS.items():
        torch.manual_seed(args.seed)
        ae = Autoencoder(64, code_dim=32, hidden=(256,), kind=kind, **extra)
        ae.init_output_bias(data.train.mean(0))
        res = train_autoencoder(
            ae,
            data.train,
            epochs=args.probe_epochs,
            test_data=data.test,
            transform=data.batch_transform,
            seed=args.seed,
            progress=False,
        )
        rows[f"ae-{kind}"] = {
            "probe_accuracy": probe_split(ae, data, seed=args.seed)["accuracy"],
            "test_loss": res.history[-1]["test_loss"],
            "train_seconds": res.seconds,
        }
    torch.manual_seed(args.seed)
    vae = VAE(64, latent_dim=32, hidden=(256,))
    vae.init_output_bias(data.train.mean(0))
    res = fit(
        vae,
        data.train,
        epochs=args.probe_epochs,
        transform=data.batch_transform,
        seed=args.seed,
        progress=False,
        test_data=data.test,
    )
    rows["vae-means"] = {
        "probe_accuracy": probe_split(vae, data, seed=args.seed)["accuracy"],
        "test_loss": -res.final_test_elbo,
        "train_seconds": res.seconds,
    }
    ref = rows["ae-plain"]["train_seconds"]
    print(
        f"\n== linear probe on 32-d encoder features, digits, {args.probe_epochs} epochs "
        f"(raw 64 pixels: {raw:.3f}); time ratio vs plain AE =="
    )
    print(f"{'encoder':<16} {'probe acc':>9} {'test loss':>10} {'train s':>8} {'ratio':>6}")
    for name, r in rows.items():
        r["time_ratio_vs_plain"] = r["train_seconds"] / ref
        print(
            f"{name:<16} {r['probe_accuracy']:>9.3f} {r['test_loss']:>10.2f} {r['train_seconds']:>8.1f} "
            f"{r['time_ratio_vs_plain']:>6.2f}"
        )
    return {
        "raw_pixels": raw,
        "epochs": args.probe_epochs,
        "rows": rows,
        "note": "test loss: nats per image (AE reconstruction + penalty; VAE negative ELBO)",
    }


def ica_table(args) -> dict:
    out = {}
    print("\n== ICA, 3 sources, 2000 points: Amari distance (0 = recovered); time ratio vs FastICA ==")
    print(f"{'prior':<9} {'method':<8} {'Amari':>7} {'seconds':>8} {'ratio':>7}")
    for prior in ("laplace", "logistic"):
        res = compare_ica(2000, 3, prior, seed=args.seed, steps=1500, svi_steps=3000)
        ref = res["fastica"]["seconds"]
        for method, r in res.items():
            r["time_ratio_vs_fastica"] = r["seconds"] / ref
            ratio = r["time_ratio_vs_fastica"]
            print(f"{prior:<9} {method:<8} {r['amari']:>7.4f} {r['seconds']:>8.2f} {ratio:>7.0f}")
        out[prior] = res
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", default="quick", choices=["smoke", "quick", "full"])
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--probe-epochs", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)"
    )
    p.add_argument("--parts", default="families,probe,ica")
    p.add_argument(
        "--reuse", action="store_true", help="keep family runs already trained with these settings"
    )
    p.add_argument(
        "--report", default="benchmarks/results/families_report", help="folder for the family report"
    )
    p.add_argument("--out", default="benchmarks/results/families.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    result = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch_threads": args.threads,
        "budget": args.budget,
        "seed": args.seed,
    }
    parts = args.parts.split(",")
    if "families" in parts:
        result["families"] = family_table(args)
    if "probe" in parts:
        result["probe"] = probe_table(args)
    if "ica" in parts:
        result["ica"] = ica_table(args)
    result["total_seconds"] = time.perf_counter() - t0
    if Path(args.out).exists():  # keep the parts not re-run this time
        previous = json.loads(Path(args.out).read_text())
        result = {**{k: previous[k] for k in ("families", "probe", "ica") if k in previous}, **result}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out} ({result['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
