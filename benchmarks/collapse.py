"""Collapse benchmark: which posterior-collapse remedy keeps latent units alive, at what cost in nats.

``pyro_gen.experiments.collapse.compare_collapse`` trains the strong-decoder VAE (encoder
64-256-16, a MADE decoder 64-256-64 conditioned on z in every layer; on MNIST 784-256-16 and
784-500-784) once per remedy from the same initialization, seed, minibatches and budget, on
dynamically binarized digits (default) or MNIST. ``plain`` (the unweighted ELBO) is the
reference measured in the same run; every other row's cost is its IS log p(x) minus plain's.
Reported per remedy on the first ``--eval-points`` test images: active units (Burda et al.'s
covariance criterion, 0.01), KL to the prior (closed form, summed over the 16 dimensions),
I(x; z) (He et al. 2019's estimator, at most log N), the unweighted test ELBO, log p(x) by
importance sampling with ``--k`` samples, training seconds, and the load average.

Resumable: each remedy's row is written to the JSON as soon as it is done, and a rerun of the
same command skips the rows it finds with the same settings (``--fresh`` starts over).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/collapse.py
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/collapse.py \\
        --data mnist:../shared/data/mnist --epochs 3 --eval-points 500 --k 200 \\
        --remedies plain,beta:0.5,warmup,cyclical:4,free-bits:0.5 --decoder-hidden 500

writes ``benchmarks/results/collapse_<data>.json``, the experiment's report folder (table and
figures) beside it in ``collapse_<data>_report/``, and prints a markdown table. Published
figures: He et al. (2019) measure active units, KL and MI on Omniglot with a PixelCNN
decoder and on Yahoo/Yelp text with LSTM decoders; nothing comparable exists for 8x8
digits or a MADE decoder, and their figures are not confirmed in REFERENCES.md, so the
column beside ours stays empty (the JSON says why).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from pyro_gen.data import load_data
from pyro_gen.experiments.collapse import (
    HEADERS,
    compare_collapse,
    parse_remedies,
    table_rows,
    training_settings,
    write_report,
)
from pyro_gen.report.files import markdown_table, to_jsonable

# He, Spokoyny, Neubig & Berg-Kirkpatrick (2019), "Lagging inference networks": figures by
# remedy name, once confirmed from the paper (REFERENCES.md carries no entry for them yet).
PUBLISHED: dict[str, str] = {}
PUBLISHED_NOTE = (
    "He et al. (2019) report active units, KL and MI for Omniglot with a PixelCNN decoder (and "
    "Yahoo/Yelp text with LSTM decoders); nothing comparable exists for 8x8 digits or for a "
    "MADE decoder, and their figures could not be confirmed here, so none is printed beside ours."
)


def _key(args: argparse.Namespace) -> dict:
    return {
        k: getattr(args, k)
        for k in (
            "data",
            "epochs",
            "batch_size",
            "lr",
            "latent_dim",
            "hidden",
            "decoder_hidden",
            "k",
            "eval_points",
            "seed",
        )
    }


def _write(out: Path, doc: dict) -> None:
    out.write_text(json.dumps(to_jsonable(doc), indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--remedies", default="plain,beta:0.5,warmup,cyclical:4,free-bits:0.5,aggressive")
    p.add_argument("--epochs", type=float, default=400.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--hidden", default="256")
    p.add_argument("--decoder-hidden", default="256")
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--eval-points", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON (default benchmarks/results/collapse_<data>.json)")
    p.add_argument("--fresh", action="store_true", help="ignore rows already in the JSON")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    data_name = args.data.split(":")[0]
    out = Path(args.out or f"benchmarks/results/collapse_{data_name}.json")
    data = load_data(args.data, binarize="dynamic", seed=args.seed)
    n = data.train.shape[0]
    total = max(1, int(round(args.epochs * max(1, n // min(args.batch_size, n)))))
    remedies = parse_remedies(args.remedies, total)
    key = _key(args)
    saved = json.loads(out.read_text()) if out.is_file() and not args.fresh else {}
    rows = {r["name"]: r for r in saved.get("results", []) if saved.get("settings") == key}
    doc = {
        "settings": key,
        "steps": total,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread",
        "published_note": PUBLISHED_NOTE,
        "results": list(rows.values()),
    }
    hidden = [int(h) for h in args.hidden.split(",")]
    decoder_hidden = [int(h) for h in args.decoder_hidden.split(",")]
    for name, settings in remedies:
        if name in rows and rows[name]["settings"] == settings:
            print(f"{name}: kept from {out}")
            continue
        t0 = time.time()
        load = os.getloadavg()[0]
        (res,) = compare_collapse(data, [(name, settings)], **training_settings(args))
        res["wall_seconds"] = time.time() - t0
        res["load_before"], res["load_after"] = load, os.getloadavg()[0]
        rows[name] = res
        ordered = [rows[m] for m, _ in remedies if m in rows]
        out.parent.mkdir(parents=True, exist_ok=True)
        doc["results"] = ordered
        _write(out, doc)
        f = res["final"]
        print(
            f"{name}: {f['active_units']}/{f['num_units']} active, KL {f['kl']:.2f}, MI "
            f"{f['mutual_information']:.2f}, log p(x) {f['log_likelihood']:.2f} nats, "
            f"{res['costs']['train_seconds']:.0f} s (load {load:.1f})"
        )
    results = [rows[m] for m, _ in remedies]
    reference = next((r for r in results if r["name"] == "plain"), results[0])["final"]["log_likelihood"]
    for r in results:
        r["final"]["delta_log_likelihood"] = r["final"]["log_likelihood"] - reference
    doc["results"] = results
    _write(out, doc)
    headers = [*HEADERS[:-2], "cost vs plain (nats)", "train seconds", "load", "He et al. 2019"]
    body = [
        [*row[:-2], row[-2], row[-1], r["load_before"], PUBLISHED.get(r["name"], "")]
        for row, r in zip(table_rows(results), results)
    ]
    points = results[0]["final"]["num_points"]
    print(f"\n{args.data}, {total} steps per remedy, {points} test images, k = {args.k}\n")
    print(markdown_table(headers, body))
    print(PUBLISHED_NOTE)
    print(f"results: {out}")
    config = {**key, "binarize": "dynamic", "hidden": hidden, "decoder_hidden": decoder_hidden}
    folder = write_report(results, out.with_suffix("").as_posix() + "_report", config)
    print(f"report: {folder}")


if __name__ == "__main__":
    main()
