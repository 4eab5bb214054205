"""Run folders: fit a registered family on a named data set and write everything a person opens.

A run folder holds ``config.json`` (how to rebuild the model), ``metrics.json``,
``history.csv``, ``checkpoint.pt`` and PNG figures.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch

from .data import DataSplit, load_data
from .inference import elbo_per_point, evaluate, fit, load_checkpoint
from .registry import get_family
from .report import (
    image_grid,
    plot_2d_samples,
    plot_elbo_curve,
    plot_latent_manifold,
    plot_latent_scatter,
    reconstruction_grid,
    write_json,
)

CHECKPOINT = "checkpoint.pt"


def write_figures(model: Any, data: DataSplit, history: list[dict], out: Path) -> list[str]:
    """Write the figures that apply to ``model`` and ``data``; return their file names."""
    written = []
    if history and "train_elbo" in history[0]:
        written.append(plot_elbo_curve(history, out / "elbo.png").name)
    if hasattr(model, "sample"):
        torch.manual_seed(0)
        samples = model.sample(64 if data.is_image else 2000)
        if data.is_image:
            written.append(image_grid(samples, out / "samples.png", data.shape, title="samples").name)
        elif data.dim == 2:
            written.append(plot_2d_samples(data.test, samples, out / "samples.png").name)
    if hasattr(model, "reconstruct") and data.is_image:
        x = data.test[:30]
        written.append(
            reconstruction_grid(x, model.reconstruct(x), data.shape, out / "reconstructions.png").name
        )
    if getattr(model, "latent_dim", None) == 2 and hasattr(model, "decode") and data.is_image:
        written.append(plot_latent_manifold(model.decode, data.shape, out / "latent_manifold.png").name)
        if hasattr(model, "encode"):
            codes = model.encode(data.test)[0]
            written.append(plot_latent_scatter(codes, data.test_labels, out / "latent_scatter.png").name)
    return written


def run_fit(
    family_name: str,
    data_spec: str = "digits",
    *,
    out: str | os.PathLike,
    options: dict | None = None,
    seed: int = 0,
    epochs: float | None = None,
    steps: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: str = "adam",
    lr_schedule: str = "constant",
    warmup_steps: int = 0,
    estimator: str | None = None,
    num_particles: int = 1,
    k: int = 5000,
    binarize: str | None = "dynamic",
    resume: bool = False,
    progress: bool = True,
    device: str | None = None,
) -> dict[str, Any] | None:
    """Fit ``family_name`` on ``data_spec``, evaluate on the test split, write the run folder.

    Returns the metrics dict also written to ``metrics.json``: ``train_elbo``, ``test_elbo``,
    ``test_log_likelihood`` (nats per data point, IS with ``k`` samples),
    ``test_bits_per_dim``, ``steps``, ``seconds`` (training wall time) and the settings.
    Under ``torchrun`` every rank trains; only rank 0 writes files and evaluates (other ranks
    return None).
    """
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    family = get_family(family_name)
    options = dict(options or {})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    data = load_data(data_spec, binarize=binarize, seed=seed)
    model = family.build(data, options)
    estimator = estimator or family.default_estimator
    config = {
        "family": family.name,
        "data": data_spec,
        "data_name": data.name,
        "shape": list(data.shape),
        "dim": data.dim,
        "binarize": binarize,
        "options": options,
        "seed": seed,
        "epochs": epochs,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer,
        "lr_schedule": lr_schedule,
        "warmup_steps": warmup_steps,
        "estimator": estimator,
        "num_particles": num_particles,
        "k": k,
    }
    ckpt = out / CHECKPOINT
    if not resume and rank == 0:
        write_json(config, out / "config.json")
    if family.train is not None:
        result = family.train(
            model,
            data,
            {**config, "progress": progress and rank == 0, "device": device, "resume": resume},
            out,
        )
    else:
        result = fit(
            model,
            data.train,
            estimator=estimator,
            num_particles=num_particles,
            optimizer=optimizer,
            lr=lr,
            lr_schedule=lr_schedule,
            warmup_steps=warmup_steps,
            batch_size=batch_size,
            epochs=epochs,
            steps=steps,
            test_data=data.test,
            transform=data.batch_transform,
            seed=seed,
            checkpoint=ckpt,
            checkpoint_every=max(1, data.train.shape[0] // batch_size),
            resume=ckpt if resume else None,
            progress=progress and rank == 0,
            device=device,
        )
    if rank != 0:
        return None
    result.write_history(out / "history.csv")
    metrics: dict[str, Any] = {
        "model": family.name,
        "data": data_spec,
        "estimator": result.estimator,
        "seed": seed,
        "steps": result.steps,
        "epochs": result.epochs,
        "seconds": result.seconds,
    }
    t0 = time.perf_counter()
    if family.evaluate is not None:
        metrics.update(family.evaluate(model, data, config))
    else:
        train_eval = data.train if data.batch_transform is None else data.batch_transform(data.train)
        metrics["train_elbo"] = elbo_per_point(model.model, model.guide, train_eval)
        ev = evaluate(model, data.test, k=k, progress=progress)
        metrics.update(
            test_elbo=ev["elbo"],
            test_log_likelihood=ev["log_likelihood"],
            test_bits_per_dim=ev["bits_per_dim"],
            k=k,
        )
    metrics["eval_seconds"] = time.perf_counter() - t0
    metrics["figures"] = write_figures(model, data, result.history, out)
    metrics["checkpoint"] = CHECKPOINT if (out / CHECKPOINT).exists() else None
    write_json(metrics, out / "metrics.json")
    return metrics


def load_run(run_dir: str | os.PathLike) -> tuple[Any, dict]:
    """Rebuild the trained model of a run folder; return ``(model, config)``."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.json)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path} is not valid JSON ({e})") from e
    family = get_family(config["family"])
    if family.load is not None:
        return family.load(run_dir, config), config
    dim = int(config["dim"])
    stub = DataSplit(
        name=config.get("data_name", "data"),
        train=torch.full((1, dim), 0.5),
        test=torch.full((1, dim), 0.5),
        shape=tuple(config["shape"]),
    )
    model = family.build(stub, config.get("options", {}))
    state = load_checkpoint(run_dir / CHECKPOINT)
    if state["module_state"] is not None and isinstance(model, torch.nn.Module):
        model.load_state_dict(state["module_state"])
        model.eval()
    pyro.get_param_store().set_state(state["param_store"])
    return model, config


def sample_run(run_dir: str | os.PathLike, num: int, out_file: str | os.PathLike, seed: int = 0) -> dict:
    """Draw ``num`` samples from a run's model into ``out_file`` (.npy, shaped like the data).

    Writes a PNG grid (images) or scatter (2-D data) beside it; returns the written paths.
    """
    if num <= 0:
        raise ValueError(f"--num must be positive, got {num}")
    out_file = Path(out_file)
    if out_file.suffix != ".npy":
        raise ValueError(f"--out must end in .npy, got {out_file}")
    model, config = load_run(run_dir)
    if not hasattr(model, "sample"):
        raise ValueError(f"model family {config['family']!r} cannot sample")
    torch.manual_seed(seed)
    x = model.sample(num).detach().cpu()
    shape = tuple(config["shape"])
    arr = x.reshape(num, *shape).numpy()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    np.save(out_file, arr)
    written = {"samples": str(out_file)}
    if len(shape) == 2:
        written["figure"] = str(image_grid(x[:100], out_file.with_suffix(".png"), shape))
    elif shape == (2,):
        written["figure"] = str(plot_2d_samples(x, x, out_file.with_suffix(".png")))
    return written
