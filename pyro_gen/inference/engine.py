"""The training loop, written once: every gradient-trained model runs through :func:`train`.

What the loop owns: data order and sharding (a ``DistributedSampler`` reseeded every epoch,
also in one process), the device and the torch threads, optimizers and learning-rate
schedules (with linear warm-up), gradient clipping, epochs or steps, a tqdm bar, history
rows, callbacks, held-out evaluation, atomic checkpoints with bit-identical resume, and
divergence detection that keeps the last good checkpoint. Training time is measured
directly around the steps (the device synchronized where one is used), never by
subtracting evaluation or callback time from a total.

What differs between trainers is an :class:`Objective` (SVI with any Pyro ELBO, the
adversarial game, a plain loss): given the step context, draw batches, compute losses,
and hand each one to :meth:`StepContext.update`; return the numbers to log.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
import torch._dynamo  # noqa: F401  (see below)
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from ..config import OPTIMIZERS as OPTIMIZER_NAMES
from ..config import SCHEDULES, TrainConfig, parse_stages
from ..data.checks import as_data_tensor
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .objective import OPTIMIZERS, Objective, StepContext, StepInfo
from .result import FitResult

# torch's optimizers import torch._dynamo when the first one is built (2-3 s on a loaded
# 2-core machine); importing it with the engine keeps that import out of the first timed step.

assert set(OPTIMIZERS) == set(OPTIMIZER_NAMES)


class TrainingDivergedError(FloatingPointError):
    """Raised when a loss becomes NaN, infinite or runs away; the last good checkpoint is left intact."""


def _median(values: Iterable[float]) -> float:
    """Return the median of a few floats (plain Python: faster than NumPy below a few hundred)."""
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


class LossWatch:
    """The runaway-loss rule: a finite loss far beyond its running scale counts as divergence.

    For each named loss the last ``window`` finite values are kept. Once ``warmup`` of them
    are in, a new value ``v`` is a runaway when ``|v - m| > factor * (|m| + s + 1)``, with
    ``m`` the median of the window and ``s`` the median absolute deviation from it (both in
    the loss's units, nats per data point for SVI; the ``+ 1`` keeps a loss that settles
    near zero from being judged on its noise alone). ``factor`` 0 turns the rule off. A
    runaway value is not added to the window. Once a window is full its median and spread
    are refreshed every :attr:`REFRESH` values (the rule costs microseconds a step).
    """

    #: once a window is full, its median and spread are recomputed every this many values
    REFRESH = 10

    def __init__(self, factor: float, window: int = 100, warmup: int = 1):
        self.factor, self.window, self.warmup = float(factor), int(window), int(warmup)
        self.values: dict[str, deque[float]] = {}
        self._stats: dict[str, tuple[float, float, int]] = {}  # median, spread, values seen since

    def _median_spread(self, name: str, vals: deque[float]) -> tuple[float, float]:
        cached = self._stats.get(name)
        if cached is None or len(vals) < self.window or cached[2] >= self.REFRESH:
            m = _median(vals)
            cached = (m, _median([abs(v - m) for v in vals]), 0)
        self._stats[name] = (cached[0], cached[1], cached[2] + 1)
        return cached[0], cached[1]

    def check(self, name: str, value: float) -> str | None:
        """Record ``value`` of the loss ``name``; return why it is a runaway, or None when it is not."""
        vals = self.values.setdefault(name, deque(maxlen=self.window))
        if self.factor > 0 and len(vals) >= self.warmup:
            m, s = self._median_spread(name, vals)
            limit = self.factor * (abs(m) + s + 1.0)
            if abs(value - m) > limit:
                return (
                    f"{value:.4g}, more than {self.factor:g} x (|median| + spread + 1) = {limit:.3g} "
                    f"from its running median {m:.4g} (spread {s:.3g}, last {len(vals)} steps)"
                )
        vals.append(float(value))
        return None

    def state_dict(self) -> dict[str, Any]:
        """Return the windows and their current medians and spreads by loss name (for a checkpoint)."""
        return {
            "values": {k: list(v) for k, v in self.values.items()},
            "stats": {k: list(v) for k, v in self._stats.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`."""
        self.values = {k: deque(v, maxlen=self.window) for k, v in state.get("values", {}).items()}
        self._stats = {k: (float(v[0]), float(v[1]), int(v[2])) for k, v in state.get("stats", {}).items()}


def total_steps_for(epochs: float | None, steps: int | None, steps_per_epoch: int) -> int:
    """Return the number of steps for exactly one of ``epochs`` or ``steps``.

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


class StageFactor:
    """The learning-rate factor of a stage schedule at a step: piecewise constant, stage by stage.

    ``stages`` are ``(epochs, factor)`` pairs (:func:`pyro_gen.config.parse_stages`); a stage
    of ``epochs`` passes lasts ``round(epochs * steps_per_epoch)`` steps (at least one). Calling
    it with a step number (counted from 0 after warm-up) returns the factor of that step's
    stage, the last stage's after the last one.
    """

    def __init__(self, stages: Sequence[tuple[float, float]], steps_per_epoch: int):
        self.ends: list[int] = []
        self.factors = [float(f) for _, f in stages]
        end = 0
        for epochs, _ in stages:
            end += max(1, int(round(epochs * steps_per_epoch)))
            self.ends.append(end)

    def __call__(self, step: int) -> float:
        for end, factor in zip(self.ends, self.factors, strict=True):
            if step < end:
                return factor
        return self.factors[-1]


def make_scheduler(
    opt: torch.optim.Optimizer,
    schedule: str,
    total_steps: int,
    warmup_steps: int = 0,
    gamma: float = 0.999,
    *,
    stages: str | None = None,
    steps_per_epoch: int = 1,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Return torch's scheduler for ``schedule`` (constant, cosine, exponential, linear, stages).

    ``cosine`` anneals to 0 at ``total_steps``; ``linear`` decays linearly to 0 at
    ``total_steps``; ``exponential`` multiplies the rate by ``gamma`` every step; ``stages``
    holds ``lr * FACTOR`` for each stage of ``stages`` (``"EPOCHS:FACTOR,..."``, epochs
    counted with ``steps_per_epoch`` optimizer steps each; :class:`StageFactor`). Each follows
    the linear warm-up of ``warmup_steps`` when there is one.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {schedule!r}")
    sched = torch.optim.lr_scheduler
    span = max(1, total_steps - warmup_steps)
    if schedule == "stages":
        if stages is None:
            raise ValueError("lr_schedule 'stages' needs its stages (--lr-stages EPOCHS:FACTOR,...)")
        main = sched.LambdaLR(opt, StageFactor(parse_stages(stages), steps_per_epoch))
    elif schedule == "cosine":
        main = sched.CosineAnnealingLR(opt, T_max=span, eta_min=0.0)
    elif schedule == "exponential":
        main = sched.ExponentialLR(opt, gamma=gamma)
    elif schedule == "linear":
        main = sched.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / span))
    else:
        main = sched.LambdaLR(opt, lambda _: 1.0)
    if warmup_steps <= 0:
        return main
    warm = sched.LinearLR(opt, start_factor=1.0 / warmup_steps, end_factor=1.0, total_iters=warmup_steps)
    return sched.SequentialLR(opt, [warm, main], milestones=[warmup_steps])


def set_adam_settings(opt: torch.optim.Optimizer, config: TrainConfig) -> None:
    """Write ``config.adam_betas`` and ``config.adam_eps`` (where set) into every parameter group
    of an Adam or AdamW optimizer, whichever objective built it; returns None. Other optimizers
    are left as they are."""
    if not isinstance(opt, torch.optim.Adam | torch.optim.AdamW):
        return
    betas = config.betas()
    for group in opt.param_groups:
        if betas is not None:
            group["betas"] = betas
        if config.adam_eps is not None:
            group["eps"] = config.adam_eps


class torch_threads:
    """Context manager: run its body with ``threads`` torch intra-op threads, then restore torch's
    previous setting. ``None`` leaves the setting as it is; a count below 1 is a ``ValueError``."""

    def __init__(self, threads: int | None):
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise ValueError(f"threads must be a positive count, got {threads!r}")
        self.threads = None if threads is None else int(threads)
        self.saved = torch.get_num_threads()

    def __enter__(self) -> int:
        self.saved = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return torch.get_num_threads()

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.saved)


#: multiply-adds per step (parameters x batch rows) below which one torch thread is fastest
ONE_THREAD_WORK = 2.5e8


def choose_threads(num_params: int, batch_size: int, device: torch.device | None = None) -> int | None:
    """Return the torch threads for a step of ``num_params`` weights on ``batch_size`` rows.

    ``None`` (leave torch's setting) on an accelerator or when ``OMP_NUM_THREADS`` is set.
    Otherwise one thread while a step costs less than :data:`ONE_THREAD_WORK` multiply-adds
    (roughly ``num_params * batch_size``): for such steps a second thread only adds
    synchronization, which on a loaded 2-core machine made Pyro steps 2-16x slower (the
    MNIST-size VAE, 784-400-50 at batch 128: 6.3 ms with one thread, 23-31 ms with two on
    the shared machine). Bigger steps get up to 4 threads, one per 2.5e8 multiply-adds,
    never more than the CPUs this process may use.
    """
    import os

    if (device is not None and device.type != "cpu") or os.environ.get("OMP_NUM_THREADS"):
        return None
    work = float(num_params) * float(batch_size)
    if work < ONE_THREAD_WORK:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cpus, int(work // ONE_THREAD_WORK)))


class _Clock:
    """Accumulates wall and CPU seconds of the timed sections only."""

    def __init__(self, seconds: float = 0.0, cpu: float = 0.0):
        self.seconds, self.cpu = seconds, cpu
        self.durations: list[float] = []

    def start(self) -> None:
        self._t, self._c = time.perf_counter(), time.process_time()

    def stop(self, record: bool = True) -> float:
        dt = time.perf_counter() - self._t
        self.seconds += dt
        self.cpu += time.process_time() - self._c
        if record:
            self.durations.append(dt)
        return dt


def _percentiles(durations: Sequence[float]) -> dict[str, float]:
    if not durations:
        return {}
    ms = np.asarray(durations) * 1000.0
    return {
        "median": float(np.median(ms)),
        "p10": float(np.percentile(ms, 10)),
        "p90": float(np.percentile(ms, 90)),
        "n": len(ms),
    }


class _Engine:
    def __init__(
        self,
        objective: Objective,
        data: torch.Tensor,
        config: TrainConfig,
        *,
        test_data: torch.Tensor | None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None,
        checkpoint: str | Path | None,
        resume: str | Path | None,
        callbacks: Sequence[Callable[[StepInfo], None]],
        row_callbacks: Sequence[Callable[[dict], None]],
        distributed: bool | None,
        default_steps: int | None,
    ):
        self.objective, self.config, self.transform = objective, config, transform
        self.callbacks, self.row_callbacks = list(callbacks), list(row_callbacks)
        data = as_data_tensor(data, "data")
        if config.validation is not None:
            # the last rows of the training set are the held-out set while training
            if config.validation >= data.shape[0]:
                raise ValueError(
                    f"--validation {config.validation} leaves no training rows "
                    f"(the training set has {data.shape[0]})"
                )
            data, test_data = data[: -config.validation], data[-config.validation :]
        objective.check_data(data if transform is None else transform(data[:256]), "data")
        if test_data is not None:
            test_data = as_data_tensor(test_data, "test_data")
            objective.check_data(test_data, "test_data")
        dev = resolve_device(config.device)
        if dev is not None:
            for m in objective.modules().values():
                m.to(dev)
            data = data.to(dev)
            test_data = None if test_data is None else test_data.to(dev)
        self.data, self.test_data, self.n = data, test_data, data.shape[0]
        self.dist_on = (
            distributed if distributed is not None else (dist.is_available() and dist.is_initialized())
        )
        if self.dist_on and not objective.distributed:
            raise ValueError(
                f"the {objective.kind} trainer does not average gradients across processes: "
                "run it in one process (without torchrun)"
            )
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if self.dist_on else (0, 1)
        if self.n < self.world:
            raise ValueError(f"data has {self.n} rows, fewer than the {self.world} processes")
        seed = config.seed or 0
        self.sampler = DistributedSampler(
            range(self.n), num_replicas=self.world, rank=self.rank, shuffle=True, seed=seed, drop_last=True
        )
        n_local = len(self.sampler)
        self.n_local = n_local
        self.batch_size = min(config.batch_size, n_local)
        self.steps_per_epoch = max(1, n_local // self.batch_size)
        steps = config.steps
        if config.epochs is None and steps is None:
            if default_steps is None:
                raise ValueError("give exactly one of epochs= or steps=")
            steps = default_steps
        self.total_steps = total_steps_for(config.epochs, steps, self.steps_per_epoch)
        self.log_every = config.log_every or self.steps_per_epoch
        self.eval_every = config.eval_every or self.log_every
        sync = config.sync_every or (1 if data.device.type == "cpu" else 50)
        self.sync_every = 1 if self.callbacks else int(sync)
        if config.checkpoint_every is not None and checkpoint is None:
            raise ValueError("checkpoint_every needs checkpoint= (a file path)")
        self.ckpt_path = Path(checkpoint) if checkpoint is not None else None
        self.checkpoint_every = config.checkpoint_every
        self.resume = resume
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self.params: dict[str, list[torch.Tensor]] = {}
        self.scheds: dict[str, Any] = {}
        self.pending_states: dict[str, dict] = {}
        self.ctx = StepContext(self)
        self.last_ckpt: Path | None = None
        self.step, self.batches, self.epoch, self.pos = 0, 0, 0, 0
        self.history: list[dict] = []
        self.sums: dict[str, Any] = {}
        self.count = 0
        self.clock = _Clock()
        self.eval_seconds = 0.0
        self.pending_loss: list[Any] = []  # losses not yet read back (accelerators)
        self.pending_names: list[str] = []
        self.watch = LossWatch(config.divergence_factor)
        self.pending_from = 0
        self.last_idx = torch.empty(0, dtype=torch.long)
        # early stopping: best held-out value, its step, evaluations since, and the best state
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.stopped = False
        self.best_state: dict[str, Any] | None = None

    # -- data ---------------------------------------------------------------------------
    def _order(self, epoch: int) -> torch.Tensor:
        self.sampler.set_epoch(epoch)
        return torch.tensor(list(self.sampler), dtype=torch.long, device=self.data.device)

    def next_batch(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n_local:
            self.epoch += 1
            self.perm, self.pos = self._order(self.epoch), 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        self.batches += 1
        self.last_idx = idx
        batch = self.data[idx]
        return self.transform(batch) if self.transform is not None else batch

    # -- optimizers ----------------------------------------------------------------------
    def backward(self, name: str, loss: Any, params: Iterable[torch.Tensor] | None) -> float:
        if name not in self.opts:
            if params is None:
                raise ValueError(f"the first update of {name!r} must name its parameters")
            plist = [p for p in params if p.requires_grad]
            if not plist:
                raise ValueError("the model has no trainable parameters")
            opt = self.objective.make_optimizer(name, plist, self.config)
            c = self.config
            set_adam_settings(opt, c)
            sched = make_scheduler(
                opt,
                c.lr_schedule,
                self.total_steps,
                c.warmup_steps,
                c.lr_gamma,
                stages=c.lr_stages,
                steps_per_epoch=self.steps_per_epoch,
            )
            if name in self.pending_states:
                opt.load_state_dict(self.pending_states[name]["optimizer"])
                sched.load_state_dict(self.pending_states[name]["scheduler"])
            self.opts[name], self.scheds[name], self.params[name] = opt, sched, plist
        if isinstance(loss, torch.Tensor):
            if loss.requires_grad:
                # clear what other groups' backward passes left on these parameters
                for p in self.params[name]:
                    p.grad = None
                loss.backward()
            loss = loss.detach()
        if self.sync_every == 1:
            value = float(loss)
            self._check_loss(name, value, self.step + 1, self.step + 1)
            return value
        if not self.pending_loss:
            self.pending_from = self.step + 1
        self.pending_loss.append(loss)
        self.pending_names.append(name)
        return math.nan

    def _check_loss(self, name: str, value: float, first: int, last: int) -> None:
        """Raise :class:`TrainingDivergedError` for a non-finite or runaway loss (before it is applied)."""
        if not math.isfinite(value):
            raise self._diverged(value, first, last, name)
        why = self.watch.check(name, value)
        if why is not None:
            raise self._diverged(value, first, last, name, runaway=why)

    def apply(self, name: str) -> None:
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params[name], self.config.clip_norm)
        self.opts[name].step()
        self.opts[name].zero_grad(set_to_none=True)

    def _diverged(
        self,
        value: float,
        first: int,
        last: int,
        name: str = "",
        what: str | None = None,
        runaway: str | None = None,
    ) -> TrainingDivergedError:
        where = f"; the last good checkpoint is {self.last_ckpt}" if self.last_ckpt else ""
        at = f"at step {last}" if first == last else f"between steps {first} and {last}"
        lr = ""
        if self.opts:
            opt = self.opts.get(name) or next(iter(self.opts.values()))
            lr = f" (lr={opt.param_groups[0]['lr']:.3g})"
        if what == "parameters":
            return TrainingDivergedError(f"the parameters became non-finite {at}{lr}{where}")
        what = f"{name} loss" if name and name != "main" else "loss"
        if runaway is not None:
            return TrainingDivergedError(
                f"{what} ran away {at}{lr}: {runaway}{where} "
                "(lower --lr, or tune the rule with --divergence-factor; 0 turns it off)"
            )
        return TrainingDivergedError(f"{what} became {value} {at}{lr}{where}")

    def _parameters_finite(self) -> bool:
        for m in self.objective.modules().values():
            for p in m.parameters():
                if p.is_floating_point() and not torch.isfinite(p).all():
                    return False
        return True

    def _read_pending(self) -> None:
        if not self.pending_loss:
            return
        values = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in self.pending_loss]).cpu()
        first, names = self.pending_from, self.pending_names
        self.pending_loss, self.pending_names = [], []
        for name, value in zip(names, values.tolist()):
            self._check_loss(name, value, first, self.step)

    # -- state ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        mods = self.objective.modules()
        return {
            "kind": self.objective.kind,
            "estimator": self.objective.estimator,
            "module_state": self.objective.checkpoint_module_state(),
            "modules": {k: m.state_dict() for k, m in mods.items()},
            "optimizer_state": {
                k: {"optimizer": o.state_dict(), "scheduler": self.scheds[k].state_dict()}
                for k, o in self.opts.items()
            },
            "param_store": self.objective.state_dict().get("param_store", {"params": {}, "constraints": {}}),
            "objective": self.objective.state_dict(),
            "rng": rng_state(),
            "loop": {
                "step": self.step,
                "batches": self.batches,
                "epoch": self.epoch,
                "global_pos": self.pos * self.world,
                "world": self.world,
                "sums": {k: float(v) for k, v in self.sums.items()},
                "count": self.count,
                "loss_watch": self.watch.state_dict(),
                "early_stopping": {
                    "best_value": self.best_value,
                    "best_step": self.best_step,
                    "bad_evals": self.bad_evals,
                    "stopped": self.stopped,
                },
            },
            "best": self.best_state,
            "history": self.history,
            "seconds": self.clock.seconds,
            "cpu_seconds": self.clock.cpu,
            "eval_seconds": self.eval_seconds,
            "config": {"total_steps": self.total_steps, "batch_size": self.batch_size},
        }

    def restore(self, path: str | Path) -> None:
        state = load_checkpoint(path)
        kind = state.get("kind")
        if kind != self.objective.kind:
            raise ValueError(
                f"cannot resume from {path}: it was written by a {kind or 'older pyro-gen'} run, "
                f"not a {self.objective.kind} run"
            )
        mods = self.objective.modules()
        saved = state["modules"]
        if set(saved) != set(mods):
            raise ValueError(
                f"cannot resume from {path}: it holds modules {sorted(saved)}, not {sorted(mods)}"
            )
        for k, m in mods.items():
            try:
                m.load_state_dict(saved[k])
            except RuntimeError as e:
                first = str(e).splitlines()[0]
                raise ValueError(
                    f"cannot resume from {path}: its {k} does not match this model ({first})"
                ) from e
        self.objective.load_state_dict(state["objective"])
        self.pending_states = dict(state["optimizer_state"])
        set_rng_state(state["rng"])
        loop = state["loop"]
        self.step, self.batches, self.epoch = loop["step"], loop["batches"], loop["epoch"]
        self.pos = loop["global_pos"] // self.world
        self.sums, self.count = dict(loop["sums"]), loop["count"]
        self.watch.load_state_dict(loop.get("loss_watch", {}))
        early = loop.get("early_stopping") or {}
        self.best_value, self.best_step = early.get("best_value"), early.get("best_step")
        self.bad_evals, self.stopped = int(early.get("bad_evals", 0)), bool(early.get("stopped", False))
        self.best_state = state.get("best")
        if loop.get("world", 1) != self.world or self.dist_on:
            # another world size (or several ranks sharing one saved RNG state): give each
            # rank its own stream, derived from the seed and the step
            pyro.set_rng_seed((self.config.seed or 0) + 7919 * self.step + 1_000_003 * self.rank)
        self.history = list(state["history"])
        self.clock = _Clock(float(state["seconds"]), float(state["cpu_seconds"]))
        self.eval_seconds = float(state["eval_seconds"])
        if self.step >= self.total_steps and not self.stopped:
            raise ValueError(
                f"checkpoint {path} is already at step {self.step} >= the {self.total_steps} requested"
            )

    def _save(self) -> None:
        self.last_ckpt = save_checkpoint(self.state(), self.ckpt_path)

    # -- the loop ------------------------------------------------------------------------
    def _sync_device(self) -> None:
        if self.data.device.type == "cuda":
            torch.cuda.synchronize(self.data.device)

    def _row(self) -> dict:
        means = {k: float(v) / max(1, self.count) for k, v in self.sums.items()}
        if self.dist_on and means:
            t = torch.tensor(list(means.values()), dtype=torch.float64)
            dist.all_reduce(t)
            means = dict(zip(means, (t / self.world).tolist()))
        row: dict[str, Any] = {"step": self.step, "epoch": round(self.batches / self.steps_per_epoch, 4)}
        row.update(self.objective.row(means, self.ctx))
        if self.opts:
            row.setdefault("lr", next(iter(self.opts.values())).param_groups[0]["lr"])
        self.sums, self.count = {}, 0
        return row

    def _timed_out_of_training(self, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.eval_seconds += time.perf_counter() - t0

    def _evaluate(self) -> dict:
        mods = self.objective.modules().values()
        for m in mods:
            m.eval()
        try:
            # evaluation draws from its own stream, so it never shifts training's
            with torch.random.fork_rng(devices=[self.data.device] if self.data.device.type == "cuda" else []):
                torch.manual_seed((self.config.seed or 0) + 7_777 + self.step)
                return self.objective.evaluate(self.test_data, self.ctx)
        finally:
            for m in mods:
                m.train()

    def _snapshot(self) -> dict[str, Any]:
        """Return a copy of the weights, the objective's state and the loader's module state."""
        objective = self.objective.state_dict()
        return copy.deepcopy(
            {
                "modules": {k: m.state_dict() for k, m in self.objective.modules().items()},
                "objective": objective,
                "module_state": self.objective.checkpoint_module_state(),
                "param_store": objective.get("param_store", {"params": {}, "constraints": {}}),
                "step": self.step,
            }
        )

    def _early_stop_due(self, row: dict) -> bool:
        """Record the held-out metric of ``row``; return True when patience has run out."""
        if "test_elbo" in row:
            value, sign = row["test_elbo"], 1.0  # nats per point, higher is better
        elif "test_loss" in row:
            value, sign = row["test_loss"], -1.0
        else:
            raise ValueError(
                f"--early-stopping: the {self.objective.kind} trainer's held-out evaluation gives "
                "neither test_elbo nor test_loss"
            )
        value = float(value)
        if self.best_value is None or sign * value > sign * self.best_value:
            self.best_value, self.best_step, self.bad_evals = value, self.step, 0
            self.best_state = self._snapshot()
        else:
            self.bad_evals += 1
        row["best_step"] = self.best_step
        return self.bad_evals >= int(self.config.early_stopping)

    def _load_best(self) -> None:
        best = self.best_state
        if best is None:
            return
        for k, m in self.objective.modules().items():
            m.load_state_dict(best["modules"][k])
        self.objective.load_state_dict(copy.deepcopy(best["objective"]))

    def run(self, progress: bool | None) -> FitResult:
        obj, cfg = self.objective, self.config
        if cfg.seed is not None:
            pyro.set_rng_seed(cfg.seed + 1_000_003 * self.rank)
        if self.resume is not None:
            # modules that create their parameters on first use (autoguides) need them now
            with torch.random.fork_rng(devices=[]):
                n = min(self.batch_size, self.n)
                obj.materialize(self.data[:n], self.ctx)
            self.restore(self.resume)
        self.perm = self._order(self.epoch)
        for m in obj.modules().values():
            m.train()
        obj.setup(self.ctx)
        saved_threads = torch.get_num_threads()
        threads = cfg.threads
        if threads is None:
            num_params = sum(p.numel() for m in obj.modules().values() for p in m.parameters())
            threads = choose_threads(num_params, self.batch_size, self.data.device)
        with torch_threads(threads):
            self._loop(progress)
        obj.finish()
        if cfg.early_stopping is not None:
            self._load_best()  # the final evaluation and the returned model use the best state
        for m in obj.modules().values():
            m.eval()
        dev = self.data.device
        return FitResult(
            model=obj.model,
            history=self.history,
            steps=self.step,
            epochs=self.batches / self.steps_per_epoch,
            seconds=self.clock.seconds,
            estimator=obj.estimator,
            kind=obj.kind,
            checkpoint=self.last_ckpt,
            cpu_seconds=self.clock.cpu,
            eval_seconds=self.eval_seconds,
            threads=threads or saved_threads,
            device=str(dev),
            step_ms=_percentiles(self.clock.durations),
            **obj.result_fields(),
        )

    def _loop(self, progress: bool | None) -> None:
        obj, cfg = self.objective, self.config
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=None if progress is None else not progress,
            desc=obj.kind,
            unit="step",
            leave=False,
        )
        try:
            while self.step < self.total_steps and not self.stopped:
                self.clock.start()
                try:
                    logs = obj.step(self.ctx)
                except RuntimeError as e:  # e.g. a sampler refusing NaN probabilities
                    if self._parameters_finite():
                        raise
                    raise self._diverged(math.nan, self.step + 1, self.step + 1) from e
                for sched in self.scheds.values():
                    sched.step()
                self.step += 1
                self.count += 1
                last = self.step == self.total_steps
                row_due = self.step % self.log_every == 0 or last
                ckpt_due = (
                    self.ckpt_path is not None
                    and self.rank == 0
                    and ((self.checkpoint_every and self.step % self.checkpoint_every == 0) or last)
                )
                sync_due = self.step % self.sync_every == 0 or row_due or ckpt_due
                if sync_due:
                    self._sync_device()
                self.clock.stop()
                if sync_due:
                    self._read_pending()
                for k, v in logs.items():
                    v = v.detach() if isinstance(v, torch.Tensor) else v
                    self.sums[k] = self.sums[k] + v if k in self.sums else v
                bar.update(1)
                if self.callbacks:
                    loss = logs.get("loss", math.nan)
                    info = self._step_info(float(loss), logs)
                    self._timed_out_of_training(lambda i=info: [cb(i) for cb in self.callbacks])
                if (row_due or ckpt_due) and not self._parameters_finite():
                    # a finite loss can still produce non-finite weights: never evaluate or
                    # save them
                    raise self._diverged(math.nan, self.step, self.step, what="parameters")
                if row_due:
                    self._sums_before_row, self._count_before_row = dict(self.sums), self.count
                    row = self._row()
                    if self.test_data is not None and (self.step % self.eval_every == 0 or last):
                        row.update(self._timed_out_of_training(self._evaluate))
                        if cfg.early_stopping is not None and self._early_stop_due(row):
                            self.stopped = True
                            # the checkpoint keeps the stopped state with this row
                            ckpt_due = self.ckpt_path is not None and self.rank == 0
                    row["seconds"] = self.clock.seconds
                    row["cpu_seconds"] = self.clock.cpu
                    row["eval_seconds"] = self.eval_seconds
                    partial = self.step % self.log_every != 0
                    if ckpt_due and partial and not self.stopped:
                        # a row that only a shorter budget logs: the checkpoint keeps the state
                        # before it, so a resumed run logs exactly what an uninterrupted one does
                        self._save_before_row(row)
                        ckpt_due = False
                    self.history.append(row)
                    postfix = {k: f"{v:.3g}" for k, v in row.items() if k in obj_postfix_keys(obj)}
                    bar.set_postfix(postfix, refresh=False)
                    self._timed_out_of_training(lambda r=row: [cb(r) for cb in self.row_callbacks])
                if ckpt_due:
                    self._timed_out_of_training(self._save)
        finally:
            bar.close()

    def _save_before_row(self, row: dict) -> None:
        # the running sums were reset by _row(); the checkpoint must hold them as they were
        saved_sums, saved_count = self.sums, self.count
        history = self.history
        self.sums, self.count = self._sums_before_row, self._count_before_row
        try:
            self._timed_out_of_training(self._save)
        finally:
            self.sums, self.count, self.history = saved_sums, saved_count, history

    def _step_info(self, loss: float, logs: dict) -> StepInfo:
        info = StepInfo(
            self.step, self.step / self.steps_per_epoch, loss, logs=logs, objective=self.objective
        )
        for key in ("model", "guide", "batch", "optimizer", "kl_weight"):
            value = getattr(self.objective, "info_" + key, None)
            setattr(info, key, value() if callable(value) else value)
        return info


def obj_postfix_keys(objective: Objective) -> tuple[str, ...]:
    """Return the history keys shown on the progress bar for ``objective``."""
    return getattr(objective, "postfix_keys", ("loss",))


def train(
    objective: Objective,
    data: torch.Tensor,
    config: TrainConfig | None = None,
    *,
    test_data: torch.Tensor | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
    callbacks: Sequence[Callable[[StepInfo], None]] = (),
    row_callbacks: Sequence[Callable[[dict], None]] = (),
    distributed: bool | None = None,
    default_steps: int | None = None,
) -> FitResult:
    """Train ``objective`` on ``data`` (rows) with the settings ``config``; return a :class:`FitResult`.

    Each step the objective draws minibatches of ``config.batch_size`` rows (shuffled per
    epoch by a ``DistributedSampler``, last partial batch dropped) through ``transform``.
    Every ``log_every`` steps (default one epoch) a history row records the means of the
    objective's logged numbers, cumulative training ``seconds``/``cpu_seconds`` (the steps
    only, measured around them) and ``eval_seconds``; every ``eval_every`` steps the
    objective's held-out numbers on ``test_data``, drawn from a random stream of their own.
    ``checkpoint`` (a file) is written atomically every ``checkpoint_every`` steps (default:
    none between) and at the end; ``resume`` (a checkpoint file) continues a run so that it
    ends bit for bit where an uninterrupted run with the same settings ends. A NaN or
    infinite loss, or a finite one far beyond its running scale (:class:`LossWatch`, tuned by
    ``config.divergence_factor``), raises :class:`TrainingDivergedError` naming the step and
    the last good checkpoint, which is left intact. ``default_steps`` is used when ``config`` gives
    neither epochs nor steps.
    """
    config = config if config is not None else TrainConfig()
    engine = _Engine(
        objective,
        data,
        config,
        test_data=test_data,
        transform=transform,
        checkpoint=checkpoint,
        resume=resume,
        callbacks=callbacks,
        row_callbacks=row_callbacks,
        distributed=distributed,
        default_steps=default_steps,
    )
    return engine.run(config.progress)
