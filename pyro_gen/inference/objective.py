"""What the engine trains: the :class:`Objective` interface, the :class:`StepContext` it steps through,
and the :class:`StepInfo` per-step callbacks receive.

An objective says what one training step is (draw batches, compute losses, update named
parameter groups) and what to log; everything else (data order, devices, optimizers and
schedules, checkpoints, divergence, timing) is the engine's (:mod:`pyro_gen.inference.engine`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import TrainConfig

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}


def build_optimizer(name: str, params: list[torch.Tensor], **kwargs: Any) -> torch.optim.Optimizer:
    """Return torch's optimizer ``name`` over ``params``; Adam and AdamW use torch's fused kernel.

    The fused kernel updates every parameter in one call (on the digits VAE's eight tensors:
    65 us a step against 205 us for the default per-tensor loop, one CPU thread), with the
    same update rule. Where a torch build or device has no fused kernel, the default is used.
    """
    cls = OPTIMIZERS[name]
    if name in ("adam", "adamw") and "fused" not in kwargs and "foreach" not in kwargs:
        try:
            return cls(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass
    return cls(params, **kwargs)


@dataclass
class StepInfo:
    """What a per-step callback sees after each step.

    ``loss`` is the step's loss as a float (``nan`` on an accelerator between reads);
    ``logs`` every number the objective logged for the step; ``objective`` the objective being
    trained. ``model``, ``guide``, ``batch`` and ``optimizer`` are the SVI objective's
    (``None`` where an objective has none); ``kl_weight`` is the weight of the KL part the
    step used (1.0 for the plain ELBO; ``None`` for objectives without one).
    """

    step: int
    epoch: float
    loss: float
    model: Any = None
    guide: Any = None
    batch: torch.Tensor | None = None
    optimizer: torch.optim.Optimizer | None = None
    logs: dict[str, float] = field(default_factory=dict)
    objective: Any = None
    kl_weight: float | None = None


class Objective:
    """What the engine trains. Subclasses set ``kind`` and implement :meth:`step`.

    * :meth:`modules`: the ``nn.Module`` s trained (moved to the device, saved, switched
      between train and eval mode);
    * :meth:`check_data`: refuse data the model cannot take (one clear ``ValueError``);
    * :meth:`setup`: called once before the first step (after a resume has restored state);
    * :meth:`step`: one training step through the :class:`StepContext`; returns the numbers
      to log (floats or 0-d tensors), including ``"loss"``, the number that must stay finite;
    * :meth:`row`: turn the means of the logged numbers since the last row into history keys;
    * :meth:`evaluate`: held-out numbers for a history row;
    * :meth:`state_dict` / :meth:`load_state_dict`: state beyond modules and optimizers;
    * :meth:`make_optimizer`: the optimizer of one named parameter group;
    * :meth:`finish`: after the last step (e.g. load averaged weights).
    """

    kind: str = "loss"
    estimator: str = "loss"
    model: Any = None
    # whether step() averages gradients over a process group (DistributedDataParallel)
    distributed: bool = False

    def modules(self) -> dict[str, torch.nn.Module]:
        """Return the trained modules by name."""
        return {}

    def check_data(self, data: torch.Tensor, name: str) -> None:
        """Raise ``ValueError`` naming ``name`` when the model cannot take ``data``."""

    def setup(self, ctx: StepContext) -> None:
        """Prepare for training (called once, after any resume)."""

    def step(self, ctx: StepContext) -> dict[str, Any]:
        """Take one training step; return the numbers to log, including ``"loss"``."""
        raise NotImplementedError

    def row(self, means: dict[str, float], ctx: StepContext) -> dict[str, Any]:
        """Return the history entries for the logged means since the previous row."""
        return dict(means)

    def evaluate(self, test_data: torch.Tensor, ctx: StepContext) -> dict[str, Any]:
        """Return held-out numbers for a history row (nothing by default)."""
        return {}

    def make_optimizer(
        self, name: str, params: list[torch.Tensor], config: TrainConfig
    ) -> torch.optim.Optimizer:
        """Return the optimizer for the parameter group ``name`` (``config.optimizer`` at ``config.lr``)."""
        return build_optimizer(config.optimizer, params, lr=config.lr)

    def state_dict(self) -> dict[str, Any]:
        """Return the objective's own state for a checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state returned by :meth:`state_dict`."""

    def checkpoint_module_state(self) -> dict[str, Any] | None:
        """Return the weights a loader rebuilds the model from (the main module's state)."""
        mods = self.modules()
        return next(iter(mods.values())).state_dict() if mods else None

    def finish(self) -> None:
        """Called after the last step."""

    def materialize(self, batch: torch.Tensor, ctx: StepContext) -> None:
        """Create parameters that the model makes on first use, before a resume restores them."""

    def result_fields(self) -> dict[str, Any]:
        """Return extra :class:`FitResult` fields (``guide``, ``params``)."""
        return {}


class StepContext:
    """The engine's side of a step: batches, optimizer updates, and where training stands.

    ``num_data`` is the size of the whole training set, ``indices`` the rows of the last
    batch drawn, ``step`` the steps completed before this one, ``distributed``/``rank``/
    ``world`` the process group.
    """

    def __init__(self, engine: Any):
        self._engine = engine

    @property
    def num_data(self) -> int:
        """Return the number of training rows (all processes)."""
        return self._engine.n

    @property
    def indices(self) -> torch.Tensor:
        """Return the row indices of the last batch drawn."""
        return self._engine.last_idx

    @property
    def step(self) -> int:
        """Return the number of steps completed."""
        return self._engine.step

    @property
    def total_steps(self) -> int:
        """Return the number of steps the run trains to."""
        return self._engine.total_steps

    @property
    def steps_per_epoch(self) -> int:
        """Return the steps of one pass over the (local) training rows."""
        return self._engine.steps_per_epoch

    def train_rows(self, num: int, seed: int) -> torch.Tensor:
        """Return the first ``num`` training rows (all when fewer), transformed with random draws from
        a stream seeded by ``seed``, so the training streams are left as they were."""
        rows = self._engine.data[: max(1, int(num))]
        if self._engine.transform is None:
            return rows
        with torch.random.fork_rng(devices=[rows.device] if rows.device.type == "cuda" else []):
            torch.manual_seed(int(seed))
            return self._engine.transform(rows)

    @property
    def batch_size(self) -> int:
        """Return the rows per batch (per process)."""
        return self._engine.batch_size

    @property
    def distributed(self) -> bool:
        """Return whether training runs in a process group."""
        return self._engine.dist_on

    @property
    def device(self) -> torch.device:
        """Return the device the data live on."""
        return self._engine.data.device

    @property
    def config(self) -> TrainConfig:
        """Return the training settings."""
        return self._engine.config

    def next_batch(self) -> torch.Tensor:
        """Return the next minibatch (transformed), advancing the data order; epochs roll over."""
        return self._engine.next_batch()

    def optimizer(self, name: str) -> torch.optim.Optimizer | None:
        """Return the optimizer of group ``name``, or None before it was created."""
        return self._engine.opts.get(name)

    def backward(
        self, name: str, loss: torch.Tensor | float, params: Iterable[torch.Tensor] | None = None
    ) -> float:
        """Back-propagate ``loss`` for group ``name`` (a float: gradients already computed).

        Creates the group's optimizer on first use from ``params``. On the CPU the loss is
        read and checked before anything is applied; returns it as a float (``nan`` when
        reading is deferred on an accelerator).
        """
        return self._engine.backward(name, loss, params)

    def apply(self, name: str) -> None:
        """Clip the group's gradients, take its optimizer step and clear the gradients."""
        self._engine.apply(name)

    def update(
        self, name: str, loss: torch.Tensor | float, params: Iterable[torch.Tensor] | None = None
    ) -> float:
        """Return :meth:`backward` after taking the step with :meth:`apply`."""
        value = self.backward(name, loss, params)
        self.apply(name)
        return value
