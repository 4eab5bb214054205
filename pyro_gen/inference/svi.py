"""Stochastic variational inference as an objective of the engine, and ``fit``, its public entry point."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO, JitTrace_ELBO, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO
from torch.nn.parallel import DistributedDataParallel

from ..config import REMEDY_ESTIMATORS, SVIConfig, TrainConfig
from ..models.base import minibatch
from .annealing import AGGRESSIVE_WINDOW, MI_ROWS, RemedyELBO, guide_parameters, kl_weight, mutual_information
from .engine import TrainingDivergedError, resolve_device, total_steps_for, train
from .estimators import guess_plate_nesting, make_estimator, own_stream
from .objective import OPTIMIZERS, Objective, StepContext, StepInfo
from .result import FitResult

__all__ = [
    "OPTIMIZERS",
    "SVIObjective",
    "StepInfo",
    "TrainingDivergedError",
    "elbo_per_point",
    "fit",
    "resolve_device",
    "resolve_pair",
    "total_steps_for",
]


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


def _registering(fn: Callable, module: torch.nn.Module | None, name: str) -> Callable:
    """Wrap ``fn`` so it registers ``module`` with the param store (needed by ELBOs whose
    ``loss_and_grads`` only differentiates registered params, and by JIT compilation)."""
    if module is None:
        return fn

    def wrapped(*args, **kwargs):
        pyro.module(name, module)
        return fn(*args, **kwargs)

    return wrapped


class _NegativeELBO(torch.nn.Module):
    """The negative ELBO as a module over the model's parameters, for DistributedDataParallel."""

    def __init__(self, module: torch.nn.Module, elbo: ELBO, model_fn: Callable, guide_fn: Callable):
        super().__init__()
        self.inner = module
        self._elbo, self._model, self._guide = elbo, model_fn, guide_fn

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self._elbo.differentiable_loss(self._model, self._guide, batch)


class SVIObjective(Objective):
    """Maximize an ELBO of a model/guide pair: one optimizer over every parameter the pair uses.

    ``estimator`` is a registered name (``reparam``, ``jit``, ``iwae:5``, ...) or any
    ``pyro.infer.ELBO``. The loss each step optimizes is the negative ELBO of the whole data
    set (the data plate of :func:`~pyro_gen.models.data_plate` scales the minibatch to it)
    divided by the number of training rows: nats per data point, whatever the optimizer, so
    learning rates do not depend on the data set's size (plain SGD included). History rows
    report ``train_elbo`` in the same units; ``test_elbo`` is the held-out ELBO per data point
    with ``eval_particles`` samples. Fast path: ``differentiable_loss`` and one torch
    optimizer; ELBOs that only offer ``loss_and_grads`` (``TraceGraph_ELBO``) or compile
    with JIT see the module registered in Pyro's param store.

    ``svi_config`` (an :class:`~pyro_gen.config.SVIConfig`) adds the posterior-collapse
    remedies (:mod:`pyro_gen.inference.annealing`): with any of them the estimators
    ``reparam``, ``auto``, ``jit`` and ``analytic-kl`` run as
    :class:`~pyro_gen.inference.annealing.RemedyELBO` (uncompiled; Monte Carlo KL as
    ``Trace_ELBO``'s, closed form for ``analytic-kl``); a KL weight, its schedule and free
    bits refuse every other estimator. History rows then also carry ``train_objective`` (the
    weighted objective), ``train_kl`` (nats per data point) and ``kl_weight`` (the weight of the row's last
    update), and ``train_elbo`` stays the unweighted ELBO. ``aggressive_encoder`` (He et al.
    2019) takes, before each model update, guide-only updates on fresh minibatches (the
    first on the model update's own batch) until the mean loss of a window of
    :data:`~pyro_gen.inference.annealing.AGGRESSIVE_WINDOW` inner updates is no lower than
    the previous window's, or ``aggressive_inner_steps`` of them; the model update then
    changes the model's parameters only. The phase ends after ``aggressive_steps`` model
    updates or, by default, at the first epoch boundary where the mutual information
    estimate on the first :data:`~pyro_gen.inference.annealing.MI_ROWS` training rows did
    not rise; plain joint updates follow. Rows carry ``inner_steps`` (mean per update).
    Held-out numbers always use the unweighted ELBO.
    """

    kind = "svi"
    postfix_keys = ("train_elbo",)
    distributed = True

    def __init__(
        self,
        model: Any,
        guide: Callable | None = None,
        *,
        estimator: str | ELBO = "reparam",
        num_particles: int = 1,
        eval_particles: int = 1,
        validate: bool = False,
        svi_config: SVIConfig | None = None,
    ):
        self.model = model
        self.model_fn, self.guide_fn, self.module = resolve_pair(model, guide)
        self.remedies = svi_config if svi_config is not None and svi_config.remedies_on else None
        self.elbo = make_estimator(estimator, num_particles=num_particles)
        self.estimator = estimator if isinstance(estimator, str) else type(self.elbo).__name__
        self._remedy_notes: list[str] = []
        name = estimator.partition(":")[0] if isinstance(estimator, str) else None
        if self.remedies is not None and (self.remedies.weights_kl or name in REMEDY_ESTIMATORS):
            self.elbo = self._remedy_elbo(estimator, num_particles)
        self.aggressive = self.remedies is not None and self.remedies.aggressive_encoder
        self._weight = 1.0
        self._guide_params: list[torch.Tensor] | None = None
        self._previous_mi: float | None = None
        self.validate = validate
        # Pyro's JitTrace_ELBO.differentiable_loss doubles the gradient of pyro.param sites
        # (pyro-ppl 1.9): its loss_and_grads is right
        self.use_diff = callable(getattr(self.elbo, "differentiable_loss", None)) and not isinstance(
            self.elbo, TraceGraph_ELBO | JitTrace_ELBO
        )
        if self.aggressive and not self.use_diff:
            raise ValueError(
                f"--aggressive-encoder needs an estimator with differentiable_loss, not {self.estimator}"
            )
        store = pyro.get_param_store()
        # a baseline's running state belongs to one run (a resumed run restores its own)
        for stale in [k for k in store.keys() if k.startswith(("__baseline", "_score_nn_baseline"))]:
            del store[stale]
        if (not self.use_diff) or isinstance(self.elbo, JitTrace_ELBO):
            for stale in [k for k in store.keys() if k.startswith("model$$$")]:
                del store[stale]
            self.model_fn = _registering(self.model_fn, self.module, "model")
            self.guide_fn = _registering(self.guide_fn, self.module, "model")
        if isinstance(self.elbo, TraceEnum_ELBO):
            self.eval_elbo: ELBO = type(self.elbo)(max_plate_nesting=self.elbo.max_plate_nesting)
        else:
            self.eval_elbo = Trace_ELBO(num_particles=eval_particles, vectorize_particles=eval_particles > 1)
        self.ddp: DistributedDataParallel | None = None
        self._batch: torch.Tensor | None = None
        self._param_names: list[str] | None = None
        self._params: list[torch.Tensor] = []
        self._ctx: StepContext | None = None

    def _remedy_elbo(self, estimator: str | ELBO, num_particles: int) -> RemedyELBO:
        """Return the ELBO that weights the KL part (a :class:`RemedyELBO` given as the estimator is
        kept), refusing estimators it is not exact for."""
        cfg = self.remedies
        assert cfg is not None
        if isinstance(estimator, RemedyELBO):
            estimator.free_bits = cfg.free_bits
            return estimator
        name = estimator.partition(":")[0] if isinstance(estimator, str) else None
        if name not in REMEDY_ESTIMATORS:
            raise ValueError(
                "--beta, --kl-schedule and --free-bits are exact only for the reparameterized ELBO "
                f"estimators ({', '.join(REMEDY_ESTIMATORS)}), not {self.estimator}"
            )
        if name in ("auto", "jit"):
            self._remedy_notes.append(
                f"estimator {self.estimator}: ran uncompiled (Trace_ELBO with a weighted KL part) "
                "because the collapse remedies weigh its KL part on its own"
            )
        return RemedyELBO(self.elbo.num_particles, analytic_kl=name == "analytic-kl", free_bits=cfg.free_bits)

    def modules(self) -> dict[str, torch.nn.Module]:
        """Return the model (or guide) module, when there is one."""
        return {"model": self.module} if self.module is not None else {}

    def check_data(self, data: torch.Tensor, name: str) -> None:
        """Defer to the model's own ``check_data`` when it has one."""
        if hasattr(self.model, "check_data"):
            self.model.check_data(data, name)

    def setup(self, ctx: StepContext) -> None:
        """Wrap the loss in DistributedDataParallel under a process group."""
        self._ctx = ctx
        if not ctx.distributed:
            return
        if self.module is None:
            raise ValueError("distributed fit needs the model (or guide) to be an nn.Module")
        from .compiled import CompiledTrace_ELBO

        if isinstance(self.elbo, CompiledTrace_ELBO):
            # tracing inside DDP's forward aborts the process (seen with torch 2.13 + gloo)
            if self.estimator != "auto":
                raise ValueError(
                    "the compiled 'jit' estimator does not run under DistributedDataParallel; use 'reparam'"
                )
            self.elbo._fall_back("DistributedDataParallel cannot run a traced graph in its forward")
        if not self.use_diff:
            raise ValueError(
                f"distributed fit needs an estimator with differentiable_loss, not {self.estimator}"
            )
        # broadcasts rank 0's parameters and buffers at construction
        self.ddp = DistributedDataParallel(
            _NegativeELBO(self.module, self.elbo, self.model_fn, self.guide_fn)
        )

    def materialize(self, batch: torch.Tensor, ctx: StepContext) -> None:
        """Run the guide once (its random draws discarded) so lazily created parameters exist."""
        if self.module is None:
            return
        idx = torch.arange(batch.shape[0], device=batch.device)
        with poutine.block(), pyro.validation_enabled(False), minibatch(ctx.num_data, idx):
            self.guide_fn(batch)

    def _loss(self, batch: torch.Tensor, num_data: int) -> torch.Tensor | float:
        """Return the negative ELBO in nats per data point (gradients taken already for a float)."""
        if self.ddp is not None:
            return self.ddp(batch) / num_data
        if self.use_diff:
            return self.elbo.differentiable_loss(self.model_fn, self.guide_fn, batch) / num_data
        # ELBOs that only offer loss_and_grads leave the full-data gradients on the parameters
        # (the module's and the param store's); they are rescaled in step()
        return self.elbo.loss_and_grads(self.model_fn, self.guide_fn, batch)

    @staticmethod
    def _per_point(loss: torch.Tensor | float, params: list[torch.Tensor], num_data: int):
        if isinstance(loss, torch.Tensor):
            return loss
        for p in params:
            if p.grad is not None:
                p.grad.div_(num_data)
        return loss / num_data

    def _discover(self, batch: torch.Tensor, ctx: StepContext) -> torch.Tensor | float:
        """First step: find every parameter the pair uses (module parameters and pyro.param
        sites, including lazily created ones) for one torch optimizer; return the step's loss."""
        guess_plate_nesting(self.elbo, self.model_fn, self.guide_fn, batch)
        with poutine.trace(param_only=True) as ptr:
            loss = self._loss(batch, ctx.num_data)
        named: dict[str, torch.Tensor] = {}
        ids: set[int] = set()
        if self.module is not None:
            for name, p in self.module.named_parameters():
                if p.requires_grad:
                    named["module:" + name], _ = p, ids.add(id(p))
        for name in sorted(ptr.trace.nodes):
            u = ptr.trace.nodes[name]["value"].unconstrained()
            if u.requires_grad and id(u) not in ids:
                named["param:" + name], _ = u, ids.add(id(u))
        if not named:
            raise ValueError("the model/guide pair has no trainable parameters")
        if self._param_names is not None:
            # a resumed run optimizes exactly what the saved run did (parameters Pyro
            # created after its first step, such as baselines, are not among them)
            store = pyro.get_param_store()
            for n in self._param_names:  # restored entries come back without requires_grad
                if n not in named and n.startswith("param:") and n[6:] in store._params:
                    named[n] = store._params[n[6:]].requires_grad_(True)
            missing = [n for n in self._param_names if n not in named]
            if missing:
                raise ValueError(f"cannot resume: the model has no parameters {missing[:3]}")
            named = {n: named[n] for n in self._param_names}
        self._param_names = list(named)
        self._params = list(named.values())
        return self._per_point(loss, self._params, ctx.num_data)

    def step(self, ctx: StepContext) -> dict[str, Any]:
        """Draw one batch and take one optimizer step on the negative ELBO (with the remedies:
        weighted, after the aggressive phase's guide-only updates)."""
        batch = ctx.next_batch()
        idx = ctx.indices
        self._batch = batch
        if self.remedies is not None:
            self._weight = kl_weight(self.remedies, ctx.step, ctx.total_steps)
            if isinstance(self.elbo, RemedyELBO):
                self.elbo.weight = self._weight
        aggressive = self.aggressive
        inner = 0
        with pyro.validation_enabled(self.validate):
            params = None
            loss: torch.Tensor | float | None = None
            if ctx.optimizer("main") is None:
                with minibatch(ctx.num_data, idx):
                    if aggressive:  # the loss is recomputed after the guide's updates
                        with own_stream((batch,)):
                            self._discover(batch, ctx)
                    else:
                        loss = self._discover(batch, ctx)
                params = self._params
            if aggressive:
                inner = self.encoder_updates(ctx, batch, idx)
            if loss is None:
                with minibatch(ctx.num_data, idx):
                    loss = self._per_point(self._loss(batch, ctx.num_data), self._params, ctx.num_data)
            if aggressive:
                # the model update: the guide's parameters keep what the inner loop made of them
                value = ctx.backward("main", loss, params)
                for p in self._guide_params or ():
                    p.grad = None
                ctx.apply("main")
            else:
                value = ctx.update("main", loss, params)
        if isinstance(loss, torch.Tensor) and value != value:  # deferred read: keep it on the device
            logs: dict[str, Any] = {"loss": loss.detach()}
        else:
            logs = {"loss": value}
        if isinstance(self.elbo, RemedyELBO) and self.elbo.last_elbo is not None:
            logs["elbo"] = self.elbo.last_elbo / ctx.num_data
            logs["kl"] = self.elbo.last_kl / ctx.num_data
        if self.remedies is not None and self.remedies.aggressive_encoder:
            logs["inner_steps"] = float(inner)
        if aggressive:
            self._end_aggressive_phase(ctx)
        return logs

    def encoder_updates(self, ctx: StepContext, batch: torch.Tensor, idx: torch.Tensor) -> int:
        """Take the aggressive phase's guide-only updates before one model update; return how many.

        The first update uses the model update's own ``batch`` (rows ``idx``), the next ones
        fresh minibatches. It stops when the mean loss of the last
        :data:`~pyro_gen.inference.annealing.AGGRESSIVE_WINDOW` updates is not below the
        previous window's mean, or after ``aggressive_inner_steps`` updates.
        """
        cfg = self.remedies
        assert cfg is not None
        if ctx.distributed:
            raise ValueError("--aggressive-encoder does not run under torchrun (ranks would stop apart)")
        if self._guide_params is None:
            with minibatch(ctx.num_data, idx):
                self._guide_params = guide_parameters(self.guide_fn, batch, self._params)
            if not self._guide_params:
                raise ValueError(
                    "--aggressive-encoder needs a guide with parameters; this model's guide has none"
                )
        previous, window, n = math.inf, 0.0, 0
        while n < cfg.aggressive_inner_steps:
            if n > 0:
                batch, idx = ctx.next_batch(), ctx.indices
            with minibatch(ctx.num_data, idx):
                loss = self._per_point(self._loss(batch, ctx.num_data), self._params, ctx.num_data)
            value = ctx.update("guide", loss, self._guide_params)
            window += value if value == value else float(torch.as_tensor(loss).detach())
            n += 1
            if n % AGGRESSIVE_WINDOW == 0:
                current = window / AGGRESSIVE_WINDOW
                if current >= previous:
                    break
                previous, window = current, 0.0
        return n

    def _end_aggressive_phase(self, ctx: StepContext) -> None:
        """End the aggressive phase after ``aggressive_steps`` updates, or when I(x; z) stopped rising."""
        cfg = self.remedies
        assert cfg is not None
        done = ctx.step + 1
        if cfg.aggressive_steps is not None:
            self.aggressive = done < cfg.aggressive_steps
            return
        if done % ctx.steps_per_epoch != 0:
            return
        seed = (ctx.config.seed or 0) + 4_099
        rows = ctx.train_rows(MI_ROWS, seed)
        with pyro.validation_enabled(False):
            mi = mutual_information(self.guide_fn, rows, seed=seed + done)
        if self._previous_mi is not None and mi < self._previous_mi:
            self.aggressive = False
        self._previous_mi = mi

    def row(self, means: dict[str, float], ctx: StepContext) -> dict[str, Any]:
        """Return ``train_elbo`` (nats per data point) and an empty ``test_elbo``; with remedies
        also ``train_objective``, ``train_kl`` (nats per data point), ``kl_weight`` (of the
        row's last update), ``inner_steps`` (aggressive guide updates per model update) and
        ``aggressive`` (whether the aggressive phase is still on)."""
        objective = -means.get("loss", float("nan"))
        row: dict[str, Any] = {"train_elbo": means.get("elbo", objective), "test_elbo": None}
        if "kl" in means:  # the objective's ELBO splits off its KL part (RemedyELBO)
            row["train_kl"] = means["kl"]
        if self.remedies is not None or "kl" in means:
            row["train_objective"] = objective
            row["kl_weight"] = self._weight
        if self.remedies is not None:
            if self.remedies.aggressive_encoder:
                row["inner_steps"] = means.get("inner_steps")
                row["aggressive"] = self.aggressive
        return row

    def evaluate(self, test_data: torch.Tensor, ctx: StepContext) -> dict[str, Any]:
        """Return the held-out ``test_elbo`` in nats per data point."""
        guess_plate_nesting(self.eval_elbo, self.model_fn, self.guide_fn, test_data[:2])
        with pyro.validation_enabled(self.validate):
            return {"test_elbo": elbo_per_point(self.model_fn, self.guide_fn, test_data, elbo=self.eval_elbo)}

    def state_dict(self) -> dict[str, Any]:
        """Return the param-store entries that are not the module's own parameters."""
        store = pyro.get_param_store()
        names = [k for k in store.keys() if not (self.module is not None and k.startswith("model$$$"))]
        return {
            "param_store": {
                "params": {k: store._params[k].detach().clone() for k in names},
                "constraints": {k: store._constraints[k] for k in names},
            },
            "param_names": self._param_names,
            "remedies": {"aggressive": self.aggressive, "previous_mi": self._previous_mi},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the param-store entries, the names of the optimized parameters and where the
        aggressive phase stands (the KL schedule follows the restored step counter)."""
        pyro.get_param_store().set_state(state["param_store"])
        self._param_names = state.get("param_names")
        remedies = state.get("remedies")
        if remedies is not None and self.remedies is not None:
            self.aggressive = bool(remedies["aggressive"]) and self.remedies.aggressive_encoder
            self._previous_mi = remedies["previous_mi"]

    # what per-step callbacks see (StepInfo.model, .guide, .batch, .optimizer)
    def info_model(self) -> Callable:
        return self.model_fn

    def info_guide(self) -> Callable:
        return self.guide_fn

    def info_batch(self) -> torch.Tensor | None:
        return self._batch

    def info_optimizer(self) -> torch.optim.Optimizer | None:
        return self._ctx.optimizer("main") if self._ctx is not None else None

    def info_kl_weight(self) -> float:
        return self._weight

    def notes(self) -> list[str]:
        """Return what a user should know about how the estimator ran (a compiled ELBO's fallback)."""
        notes = list(self._remedy_notes)
        if isinstance(self.elbo, RemedyELBO) and self.elbo.kl_methods:
            kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.elbo.kl_methods.items()))
            notes.append(f"KL part per latent site ({kinds})")
        reason = getattr(self.elbo, "fallback_reason", None)
        if reason is not None:
            notes.append(f"estimator {self.estimator}: ran uncompiled (Trace_ELBO) because {reason}")
        return notes

    def result_fields(self) -> dict[str, Any]:
        """Return the guide and the notes for the :class:`FitResult`."""
        return {"guide": self.guide_fn, "notes": self.notes()}


def fit(
    model: Any,
    data: torch.Tensor,
    *,
    guide: Callable | None = None,
    estimator: str | ELBO = "auto",
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
    threads: int | None = None,
    config: TrainConfig | None = None,
    svi_config: SVIConfig | None = None,
) -> FitResult:
    """Train ``model`` (with ``guide``) on ``data`` by stochastic variational inference.

    Each step draws a minibatch of ``batch_size`` rows (shuffled per epoch, last partial
    batch dropped), applies ``transform`` (e.g. dynamic binarization), and takes one
    optimizer step on the ELBO ``estimator`` (a registered name or any ``pyro.infer.ELBO``;
    the default ``"auto"`` compiles ``Trace_ELBO`` where the model's structure allows and
    checks the compiled graph against it, else runs it uncompiled and says so in
    ``FitResult.notes``). The loss is the negative ELBO in nats per data point.
    Models that use :func:`~pyro_gen.models.data_plate` see the true data-set size, so the
    loss is an unbiased estimate of the full-data negative ELBO. Train for ``epochs``
    (passes over the data) or ``steps``. Every ``log_every`` steps (default: one epoch) a
    history row is recorded; every ``eval_every`` steps the held-out ELBO of ``test_data``.
    ``checkpoint`` is written every ``checkpoint_every`` steps and at the end; ``resume``
    continues a checkpointed run with identical numbers. Returns a :class:`FitResult`
    whose ELBOs are in nats per data point and times in seconds (training steps only,
    measured around them; evaluation and callbacks in ``eval_seconds``).

    Under ``torchrun`` (an initialised ``torch.distributed`` process group, or
    ``distributed=True``) the loss is wrapped in ``DistributedDataParallel``: each rank
    draws ``batch_size`` rows from its ``DistributedSampler`` shard (reseeded per epoch),
    gradients are averaged by DDP, and only rank 0 writes checkpoints. A checkpoint resumes
    under any world size (bit for bit under the same one).

    ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``) moves the module and the
    data there once, before training. ``sync_every``: steps between reading the loss back
    to the host (CPU default 1: a non-finite loss stops training before it is applied;
    accelerators default 50). ``threads``: torch threads while training. ``config`` (a
    :class:`~pyro_gen.config.TrainConfig`) replaces every training setting given here.
    ``svi_config`` (an :class:`~pyro_gen.config.SVIConfig`) adds the posterior-collapse
    remedies (``beta``, ``kl_schedule``, ``free_bits``, ``aggressive_encoder``, ...; see
    :class:`SVIObjective`); its ``estimator``, ``num_particles`` and ``eval_particles`` are
    not read (pass those here). All of it runs in :func:`pyro_gen.inference.engine.train`
    with an :class:`SVIObjective`.
    """
    if config is None:
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        config = TrainConfig(
            epochs=epochs,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            lr_schedule=lr_schedule,
            warmup_steps=warmup_steps,
            lr_gamma=lr_gamma,
            clip_norm=clip_norm,
            seed=seed,
            device=None if device is None else str(device),
            threads=threads,
            log_every=log_every,
            eval_every=eval_every,
            checkpoint_every=checkpoint_every,
            sync_every=sync_every,
            progress=progress,
        )
    objective = SVIObjective(
        model,
        guide,
        estimator=estimator,
        num_particles=num_particles,
        eval_particles=eval_particles,
        validate=validate,
        svi_config=svi_config,
    )
    if optimizer_kwargs:
        kwargs = dict(optimizer_kwargs)
        objective.make_optimizer = lambda name, params, cfg: OPTIMIZERS[cfg.optimizer](  # type: ignore[method-assign]
            params, lr=cfg.lr, **kwargs
        )
    return train(
        objective,
        data,
        config,
        test_data=test_data,
        transform=transform,
        checkpoint=checkpoint,
        resume=resume,
        callbacks=callbacks,
        distributed=distributed,
    )
