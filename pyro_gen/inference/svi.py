"""The one training loop: any model/guide pair, any Pyro ELBO, minibatches, checkpoints, resume."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
import torch.distributed as dist
from pyro.infer import ELBO, JitTrace_ELBO, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from ..data.checks import as_data_tensor
from ..models.base import minibatch
from .checkpoint import load_checkpoint, save_checkpoint
from .estimators import make_estimator
from .result import FitResult

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}
SCHEDULES = ("constant", "cosine", "exponential")


def total_steps_for(epochs: float | None, steps: int | None, steps_per_epoch: int) -> int:
    """Return the number of optimizer steps for exactly one of ``epochs`` or ``steps``.

    Raises ``ValueError`` when both or neither are given, or either is not positive.
    """
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs= or steps=")
    if epochs is not None:
        if epochs <= 0:
            raise ValueError(f"epochs must be positive, got {epochs}")
        return max(1, int(round(epochs * steps_per_epoch)))
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    return int(steps)


def resolve_device(device: str | torch.device | None) -> torch.device | None:
    """Return the torch device for ``"cpu"``, ``"cuda[:i]"`` or ``"auto"`` (CUDA when available).

    ``None`` means "leave tensors where they are". Raises ``ValueError`` for an unknown name
    or for CUDA on a machine without it.
    """
    if device is None:
        return None
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be cpu, cuda, cuda:N or auto, got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


class _LossModule(torch.nn.Module):
    """The negative ELBO as a module over the model's parameters, for DistributedDataParallel."""

    def __init__(self, module: torch.nn.Module, elbo: ELBO, model_fn: Callable, guide_fn: Callable):
        super().__init__()
        self.inner = module
        self._elbo, self._model, self._guide = elbo, model_fn, guide_fn

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self._elbo.differentiable_loss(self._model, self._guide, batch)


class TrainingDivergedError(FloatingPointError):
    """Raised when the loss becomes NaN or infinite; the last good checkpoint is left intact."""


@dataclass
class StepInfo:
    """What a callback sees after each optimizer step."""

    step: int
    epoch: float
    loss: float
    model: Callable
    guide: Callable
    batch: torch.Tensor
    optimizer: torch.optim.Optimizer


def resolve_pair(
    model: Any, guide: Callable | None = None
) -> tuple[Callable, Callable, torch.nn.Module | None]:
    """Return ``(model_fn, guide_fn, module)`` from a model object or a model/guide pair.

    ``model`` is either an object with ``model`` and ``guide`` methods (an ``nn.Module`` such
    as :class:`~pyro_gen.models.VAE`) or a model function given together with ``guide``.
    """
    module = model if isinstance(model, torch.nn.Module) else None
    if guide is None:
        if not (callable(getattr(model, "model", None)) and callable(getattr(model, "guide", None))):
            raise ValueError(
                "model must have .model and .guide methods, or pass guide= with a model function"
            )
        return model.model, model.guide, module
    if not callable(model) and not callable(getattr(model, "model", None)):
        raise ValueError("model must be callable")
    model_fn = model.model if callable(getattr(model, "model", None)) else model
    if module is None and isinstance(guide, torch.nn.Module):
        module = guide
    return model_fn, guide, module


def _registering(fn: Callable, module: torch.nn.Module | None, name: str) -> Callable:
    """Wrap ``fn`` so it registers ``module`` with the param store (needed by ELBOs whose
    ``loss_and_grads`` only differentiates registered params, and by JIT compilation)."""
    if module is None:
        return fn

    def wrapped(*args, **kwargs):
        pyro.module(name, module)
        return fn(*args, **kwargs)

    return wrapped


def _make_optimizer(name: str, params: Sequence[torch.Tensor], lr: float, **kw) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](params, lr=lr, **kw)


def _make_scheduler(opt, schedule: str, total_steps: int, warmup_steps: int, gamma: float):
    if schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {schedule!r}")
    sched = torch.optim.lr_scheduler
    if schedule == "cosine":
        main = sched.CosineAnnealingLR(opt, T_max=max(1, total_steps - warmup_steps), eta_min=0.0)
    elif schedule == "exponential":
        main = sched.ExponentialLR(opt, gamma=gamma)
    else:
        main = sched.LambdaLR(opt, lambda _: 1.0)
    if warmup_steps <= 0:
        return main
    warm = sched.LinearLR(opt, start_factor=1.0 / warmup_steps, end_factor=1.0, total_iters=warmup_steps)
    return sched.SequentialLR(opt, [warm, main], milestones=[warmup_steps])


@torch.no_grad()
def elbo_per_point(
    model: Callable,
    guide: Callable,
    data: torch.Tensor,
    batch_size: int = 1024,
    num_particles: int = 1,
    elbo: ELBO | None = None,
) -> float:
    """Return the ELBO of ``data`` in nats per data point (a Monte Carlo estimate).

    Evaluated in batches of ``batch_size`` rows with ``num_particles`` samples each.
    """
    if elbo is None:
        elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1)
    total = 0.0
    for start in range(0, data.shape[0], batch_size):
        total += float(elbo.loss(model, guide, data[start : start + batch_size]))
    return -total / data.shape[0]


def _mean_over_ranks(value: float, dist_on: bool) -> float:
    if not dist_on:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def _rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (saving the legacy global state)
        "python": random.getstate(),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])


def fit(
    model: Any,
    data: torch.Tensor,
    *,
    guide: Callable | None = None,
    estimator: str | ELBO = "reparam",
    num_particles: int = 1,
    optimizer: str = "adam",
    lr: float = 1e-3,
    optimizer_kwargs: dict | None = None,
    lr_schedule: str = "constant",
    warmup_steps: int = 0,
    lr_gamma: float = 0.999,
    clip_norm: float | None = None,
    batch_size: int = 128,
    epochs: float | None = None,
    steps: int | None = None,
    test_data: torch.Tensor | None = None,
    eval_every: int | None = None,
    eval_particles: int = 1,
    log_every: int | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int | None = 0,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: str | Path | None = None,
    callbacks: Sequence[Callable[[StepInfo], None]] = (),
    progress: bool = True,
    validate: bool = False,
    distributed: bool | None = None,
    device: str | torch.device | None = None,
    sync_every: int | None = None,
) -> FitResult:
    """Train ``model`` (with ``guide``) on ``data`` by stochastic variational inference.

    Each step draws a minibatch of ``batch_size`` rows (shuffled per epoch, last partial
    batch dropped), applies ``transform`` (e.g. dynamic binarization), and takes one
    optimizer step on the ELBO ``estimator`` (a registered name or any ``pyro.infer.ELBO``).
    Models that use :func:`~pyro_gen.models.data_plate` see the true data-set size, so the
    loss is an unbiased estimate of the full-data negative ELBO. Train for ``epochs``
    (passes over the data) or ``steps``. Every ``log_every`` steps (default: one epoch) a
    history row is recorded; every ``eval_every`` steps the held-out ELBO of ``test_data``.
    ``checkpoint`` is written every ``checkpoint_every`` steps and at the end; ``resume``
    continues a checkpointed run with identical numbers. Returns a :class:`FitResult`
    whose ELBOs are in nats per data point and times in seconds.

    Under ``torchrun`` (an initialised ``torch.distributed`` process group, or
    ``distributed=True``) the loss is wrapped in ``DistributedDataParallel``: each rank
    draws ``batch_size`` rows from its ``DistributedSampler`` shard (reseeded per epoch),
    gradients are averaged by DDP, and only rank 0 writes checkpoints. The shuffling is the
    sampler's in every case, so a checkpoint resumes under any world size (bit for bit under
    the same one).

    ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``) moves the module and the
    data there once, before training.

    ``sync_every``: steps between reading the loss back to the host. On the CPU (default 1)
    every step is checked and a non-finite loss stops training before the optimizer applies
    it. On an accelerator (default 50) the losses are summed on the device and read once per
    ``sync_every`` steps, at every history row and before every checkpoint, so the GPU is
    never stalled by the host; a non-finite loss is then reported for the window in which it
    happened, and checkpoints are only written after a clean read. Callbacks see every
    step's loss, so with ``callbacks`` it is 1.
    """
    data = as_data_tensor(data, "data")
    model_fn, guide_fn, module = resolve_pair(model, guide)
    if hasattr(model, "check_data"):
        model.check_data(data if transform is None else transform(data[:256]), "data")
    if test_data is not None:
        test_data = as_data_tensor(test_data, "test_data")
        if hasattr(model, "check_data"):
            model.check_data(test_data, "test_data")
    dev = resolve_device(device)
    if dev is not None:
        if module is not None:
            module.to(dev)
        data = data.to(dev)
        test_data = None if test_data is None else test_data.to(dev)
    n = data.shape[0]
    if sync_every is None:
        sync_every = 1 if data.device.type == "cpu" else 50
    if int(sync_every) < 1:
        raise ValueError(f"sync_every must be a positive number of steps, got {sync_every}")
    sync_every = 1 if callbacks else int(sync_every)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    dist_on = distributed if distributed is not None else (dist.is_available() and dist.is_initialized())
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist_on else (0, 1)
    if dist_on and module is None:
        raise ValueError("distributed fit needs the model (or guide) to be an nn.Module")
    if n < world:
        raise ValueError(f"data has {n} rows, fewer than the {world} processes")
    sampler = DistributedSampler(
        range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed or 0, drop_last=True
    )
    n_local = len(sampler)
    batch_size = min(batch_size, n_local)
    steps_per_epoch = max(1, n_local // batch_size)
    total_steps = total_steps_for(epochs, steps, steps_per_epoch)
    log_every = log_every or steps_per_epoch
    eval_every = eval_every or log_every
    if lr <= 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be a positive number, got {lr}")
    if checkpoint_every is not None and checkpoint is None:
        raise ValueError("checkpoint_every needs checkpoint= (a file path)")

    elbo = make_estimator(estimator, num_particles=num_particles)
    estimator_name = estimator if isinstance(estimator, str) else type(elbo).__name__
    # Fast path: differentiable_loss + one torch optimizer over all parameters. ELBOs that
    # only offer loss_and_grads (TraceGraph_ELBO) or compile with JIT need the module's
    # parameters registered with Pyro's param store; wrap model and guide for them.
    use_diff = callable(getattr(elbo, "differentiable_loss", None)) and not isinstance(elbo, TraceGraph_ELBO)
    needs_registration = (not use_diff) or isinstance(elbo, JitTrace_ELBO)
    if needs_registration:
        store = pyro.get_param_store()
        for stale in [k for k in store.keys() if k.startswith("model$$$")]:
            del store[stale]
        model_fn = _registering(model_fn, module, "model")
        guide_fn = _registering(guide_fn, module, "model")
    if isinstance(elbo, TraceEnum_ELBO):
        eval_elbo: ELBO = type(elbo)(max_plate_nesting=elbo.max_plate_nesting)
    else:
        eval_elbo = Trace_ELBO(num_particles=eval_particles, vectorize_particles=eval_particles > 1)

    def epoch_order(epoch: int) -> torch.Tensor:
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.long, device=data.device)

    state = load_checkpoint(resume) if resume is not None else None
    if seed is not None:
        pyro.set_rng_seed(seed + 1_000_003 * rank)
    if state is not None:
        if module is not None and state["module_state"] is not None:
            module.load_state_dict(state["module_state"])
        pyro.get_param_store().set_state(state["param_store"])
        _set_rng_state(state["rng"])
        loop = state["loop"]
        step, epoch = loop["step"], loop["epoch"]
        if loop.get("world", 1) != world or dist_on:
            # another world size (or several ranks sharing one saved RNG state): give each
            # rank its own stream, derived from the seed and the step
            pyro.set_rng_seed((seed or 0) + 7919 * step + 1_000_003 * rank)
        perm, pos = epoch_order(epoch), loop["global_pos"] // world
        history = list(state.get("history", []))
        elapsed = float(state.get("seconds", 0.0))
        if step >= total_steps:
            raise ValueError(f"checkpoint {resume} is already at step {step} >= the {total_steps} requested")
    else:
        step, epoch, pos, history, elapsed = 0, 0, 0, [], 0.0
        perm = epoch_order(epoch)
    ddp = None
    if dist_on:
        from .compiled import CompiledTrace_ELBO

        if isinstance(elbo, CompiledTrace_ELBO):
            # tracing inside DDP's forward aborts the process (seen with torch 2.13 + gloo)
            raise ValueError(
                "the compiled 'jit' estimator does not run under DistributedDataParallel; use 'reparam'"
            )
        if not use_diff:
            raise ValueError(
                f"distributed fit needs an estimator with differentiable_loss, not {estimator_name}"
            )
        # broadcasts rank 0's parameters and buffers at construction
        ddp = DistributedDataParallel(_LossModule(module, elbo, model_fn, guide_fn))

    def compute_loss(batch: torch.Tensor) -> torch.Tensor | float:
        # returns the loss still on the device: reading it (float()) is the host sync
        if ddp is not None:
            loss_t = ddp(batch)
        elif use_diff:
            loss_t = elbo.differentiable_loss(model_fn, guide_fn, batch)
        else:
            return elbo.loss_and_grads(model_fn, guide_fn, batch)
        loss_t.backward()
        return loss_t.detach()

    opt: torch.optim.Optimizer | None = None
    sched = None
    params: list[torch.Tensor] = []
    running, running_count = 0.0, 0
    pending: torch.Tensor | float | None = None  # losses summed on the device since the last read
    pending_from = 0  # first step in ``pending``

    def diverged(value: float, first: int, last: int) -> TrainingDivergedError:
        where = f"; the last good checkpoint is {last_ckpt}" if last_ckpt else ""
        at = f"at step {last}" if first == last else f"between steps {first} and {last}"
        return TrainingDivergedError(f"loss became {value} {at} (lr={opt.param_groups[0]['lr']:.3g}){where}")

    if state is not None:
        running, running_count = state["loop"].get("running", 0.0), state["loop"].get("running_count", 0)
    if module is not None:
        module.train()
    bar = tqdm(total=total_steps, initial=step, disable=not progress, desc="fit", unit="step", leave=False)
    t_start = time.perf_counter() - elapsed
    eval_seconds = 0.0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    last_ckpt: Path | None = None

    def make_state() -> dict:
        store = pyro.get_param_store()
        names = [k for k in store.keys() if not (module is not None and k.startswith("model$$$"))]
        return {
            "module_state": module.state_dict() if module is not None else None,
            "optimizer_state": opt.state_dict() if opt is not None else None,
            "scheduler_state": sched.state_dict() if sched is not None else None,
            "param_store": {
                "params": {k: store._params[k].detach().clone() for k in names},
                "constraints": {k: store._constraints[k] for k in names},
            },
            "rng": _rng_state(),
            "loop": {
                "step": step,
                "epoch": epoch,
                "global_pos": pos * world,
                "world": world,
                "running": running,
                "running_count": running_count,
            },
            "history": history,
            "seconds": time.perf_counter() - t_start - eval_seconds,
            "config": {"estimator": estimator_name, "total_steps": total_steps, "batch_size": batch_size},
        }

    try:
        with pyro.validation_enabled(validate):
            while step < total_steps:
                if pos + batch_size > n_local:
                    epoch += 1
                    perm, pos = epoch_order(epoch), 0
                idx = perm[pos : pos + batch_size]
                pos += batch_size
                batch = data[idx]
                if transform is not None:
                    batch = transform(batch)
                with minibatch(n, idx):
                    if opt is None:
                        # First step: find every parameter the pair uses (module parameters and
                        # pyro.param sites, including lazily created ones), then build one
                        # torch optimizer over all of them.
                        with poutine.trace(param_only=True) as ptr:
                            loss = compute_loss(batch)
                        seen: dict[int, torch.Tensor] = {}
                        if module is not None:
                            for p in module.parameters():
                                if p.requires_grad:
                                    seen[id(p)] = p
                        for name in sorted(ptr.trace.nodes):
                            site = ptr.trace.nodes[name]
                            u = site["value"].unconstrained()
                            if u.requires_grad:
                                seen.setdefault(id(u), u)
                        params = list(seen.values())
                        if not params:
                            raise ValueError("the model/guide pair has no trainable parameters")
                        opt = _make_optimizer(optimizer, params, lr, **(optimizer_kwargs or {}))
                        sched = _make_scheduler(opt, lr_schedule, total_steps, warmup_steps, lr_gamma)
                        if state is not None:
                            if state["optimizer_state"] is not None:
                                opt.load_state_dict(state["optimizer_state"])
                            if state.get("scheduler_state") is not None:
                                sched.load_state_dict(state["scheduler_state"])
                    else:
                        loss = compute_loss(batch)
                if sync_every == 1:
                    loss = float(loss)
                    if not math.isfinite(loss):
                        raise diverged(loss, step + 1, step + 1)
                    running += loss
                else:
                    if pending is None:
                        pending, pending_from = loss, step + 1
                    else:
                        pending = pending + loss
                if clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
                sched.step()
                step += 1
                running_count += 1
                bar.update(1)
                ckpt_due = (
                    ckpt_path is not None
                    and rank == 0
                    and ((checkpoint_every and step % checkpoint_every == 0) or step == total_steps)
                )
                if pending is not None and (
                    step % sync_every == 0 or step % log_every == 0 or step == total_steps or ckpt_due
                ):
                    total = float(pending)  # the one host-device sync of the window
                    if not math.isfinite(total):
                        raise diverged(total, pending_from, step)
                    running += total
                    pending = None
                if callbacks:
                    info = StepInfo(step, step / steps_per_epoch, loss, model_fn, guide_fn, batch, opt)
                    t_cb = time.perf_counter()
                    for cb in callbacks:
                        cb(info)
                    eval_seconds += time.perf_counter() - t_cb  # callbacks are not training time
                if step % log_every == 0 or step == total_steps:
                    row = {
                        "step": step,
                        "epoch": round(step / steps_per_epoch, 4),
                        "train_elbo": -_mean_over_ranks(running / running_count, dist_on) / n,
                        "test_elbo": None,
                        "seconds": time.perf_counter() - t_start - eval_seconds,
                        "lr": opt.param_groups[0]["lr"],
                    }
                    running, running_count = 0.0, 0
                    if test_data is not None and (step % eval_every == 0 or step == total_steps):
                        t0 = time.perf_counter()
                        if module is not None:
                            module.eval()
                        row["test_elbo"] = elbo_per_point(model_fn, guide_fn, test_data, elbo=eval_elbo)
                        if module is not None:
                            module.train()
                        eval_seconds += time.perf_counter() - t0
                    history.append(row)
                    bar.set_postfix(elbo=f"{row['train_elbo']:.2f}", refresh=False)
                if ckpt_due:
                    last_ckpt = save_checkpoint(make_state(), ckpt_path)
    finally:
        bar.close()
    if module is not None:
        module.eval()
    return FitResult(
        model=model,
        guide=guide_fn,
        history=history,
        steps=step,
        epochs=step / steps_per_epoch,
        seconds=time.perf_counter() - t_start - eval_seconds,
        estimator=estimator_name,
        checkpoint=last_ckpt,
    )
