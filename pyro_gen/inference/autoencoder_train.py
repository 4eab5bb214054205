"""Training loop for deterministic autoencoders (no ELBO: a plain minibatch loss).

It returns the same :class:`~pyro_gen.inference.FitResult` as the SVI loop, so comparisons
read timings and history alike; its history rows carry ``train_loss``/``test_loss`` (the
autoencoder's loss per data point) instead of ELBOs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.checks import as_data_tensor
from .result import FitResult
from .svi import OPTIMIZERS, TrainingDivergedError, total_steps_for


@torch.no_grad()
def autoencoder_loss(model: Any, data: torch.Tensor, batch_size: int = 1024) -> float:
    """Return ``model.loss`` averaged over all rows of ``data`` (per data point; eval mode, fixed RNG use)."""
    total = 0.0
    for start in range(0, data.shape[0], batch_size):
        xb = data[start : start + batch_size]
        total += float(model.loss(xb)) * xb.shape[0]
    return total / data.shape[0]


def train_autoencoder(
    model: torch.nn.Module,
    data: torch.Tensor,
    *,
    epochs: float | None = None,
    steps: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: str = "adam",
    test_data: torch.Tensor | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    log_every: int | None = None,
    seed: int | None = 0,
    progress: bool = True,
) -> FitResult:
    """Minimise ``model.loss(batch)`` by minibatch gradient descent; return a :class:`FitResult`.

    ``model`` is anything with ``loss(x) -> scalar`` and parameters (an
    :class:`~pyro_gen.models.autoencoders.Autoencoder`). Minibatches of ``batch_size`` rows
    are shuffled each epoch (last partial batch dropped) and passed through ``transform``
    (e.g. dynamic binarization). Train for ``epochs`` or ``steps``. Every ``log_every`` steps
    (default one epoch) a history row records ``train_loss`` (mean since the last row, per
    data point), ``test_loss`` (on ``test_data``, or None) and ``seconds`` of training.
    """
    data = as_data_tensor(data, "data")
    if hasattr(model, "check_data"):
        model.check_data(data if transform is None else transform(data[:256]), "data")
    if test_data is not None:
        test_data = as_data_tensor(test_data, "test_data")
        if hasattr(model, "check_data"):
            model.check_data(test_data, "test_data")
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs= or steps=")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if lr <= 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be a positive number, got {lr}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    n = data.shape[0]
    batch_size = min(batch_size, n)
    per_epoch = max(1, n // batch_size)
    total = total_steps_for(epochs, steps, per_epoch)
    log_every = log_every or per_epoch
    gen = torch.Generator()
    if seed is not None:
        torch.manual_seed(seed)
        gen.manual_seed(seed)
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr)
    history: list[dict] = []
    running, count, step, pos = 0.0, 0, 0, n
    perm = torch.arange(n)
    eval_seconds = 0.0
    t0 = time.perf_counter()
    model.train()
    with tqdm(total=total, disable=not progress, desc="autoencoder", unit="step", leave=False) as bar:
        while step < total:
            if pos + batch_size > n:
                perm, pos = torch.randperm(n, generator=gen), 0
            batch = data[perm[pos : pos + batch_size]]
            pos += batch_size
            if transform is not None:
                batch = transform(batch)
            loss = model.loss(batch)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"autoencoder loss became {loss.item()} at step {step + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            running += loss.item()
            count += 1
            bar.update(1)
            if step % log_every == 0 or step == total:
                row = {
                    "step": step,
                    "epoch": round(step / per_epoch, 4),
                    "train_loss": running / count,
                    "test_loss": None,
                    "seconds": time.perf_counter() - t0 - eval_seconds,
                    "lr": lr,
                }
                running, count = 0.0, 0
                if test_data is not None:
                    te = time.perf_counter()
                    model.eval()
                    row["test_loss"] = autoencoder_loss(model, test_data)
                    model.train()
                    eval_seconds += time.perf_counter() - te
                history.append(row)
                bar.set_postfix(loss=f"{row['train_loss']:.2f}", refresh=False)
    model.eval()
    return FitResult(
        model=model,
        history=history,
        steps=step,
        epochs=step / per_epoch,
        seconds=time.perf_counter() - t0 - eval_seconds,
        estimator=f"autoencoder:{getattr(model, 'kind', 'plain')}",
    )
