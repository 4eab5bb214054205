"""A compiled ``Trace_ELBO`` for models that are ``nn.Module`` s: the fast path of ``fit``.

``make_estimator("jit")`` and ``make_estimator("auto")`` (the default of ``fit``) return one
(see :mod:`pyro_gen.inference.estimators`).
"""

from __future__ import annotations

import warnings

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO

from ..models.base import current_minibatch
from .estimators import SyncFreeTrace_ELBO, own_stream

#: calls per compiled graph checked against the uncompiled ELBO on the same noise
VERIFY_CALLS = 2


class _LossModule(torch.nn.Module):
    """Holds the model's module so ``torch.jit.trace`` records its parameters as parameters."""

    def __init__(self, elbo: ELBO, module: torch.nn.Module, model, guide):
        super().__init__()
        self.inner = module
        self._elbo, self._model, self._guide = elbo, model, guide

    def forward(self, *args):
        # Pyro's Trace_ELBO returns loss + (surrogate - surrogate.item()): traced, that item
        # becomes a constant of the graph, which shifts the loss's rounding by when it was traced
        return SyncFreeTrace_ELBO.differentiable_loss(self._elbo, self._model, self._guide, *args)


class CompiledTrace_ELBO(SyncFreeTrace_ELBO):
    """``Trace_ELBO`` compiled once per input shape with ``torch.jit.trace``, checked, with a fallback.

    The same estimator as ``Trace_ELBO`` (reparameterized gradients where possible). When the
    model and guide are methods of one ``nn.Module`` (as every pyro-gen model is), the whole
    ELBO (both programs, every ``log_prob``, the sampling) is traced into a TorchScript graph
    that shares the module's parameters, so each later step runs without Pyro's Python-level
    effect handlers or param-store look-ups. Pyro has no module-level compiled ELBO, and its
    ``JitTrace_ELBO.differentiable_loss`` (pyro-ppl 1.9) returns twice the gradient of
    ``pyro.param`` sites, so neither is used here.

    Tracing runs on a copy of the random state, so compiling (again, after a resume) never
    shifts the sampling stream. The first :data:`VERIFY_CALLS` calls of each graph are also
    evaluated by the uncompiled ``Trace_ELBO`` on the same noise (module buffers restored);
    a graph that disagrees (the structure depends on the data's values), fails to trace, a
    pair that is not two methods of one module, or one with ``pyro.param`` sites outside the
    module (a trace would freeze them) falls back to the uncompiled ``Trace_ELBO`` for good,
    and :attr:`fallback_reason` says why (``None`` while compiled).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._compiled: dict = {}
        self.fallback_reason: str | None = None
        self._reference = SyncFreeTrace_ELBO(*args, **kwargs)

    @property
    def compiled(self) -> bool:
        """Return whether the ELBO still runs compiled (False once it fell back)."""
        return self.fallback_reason is None

    def _fall_back(self, reason: str) -> None:
        self.fallback_reason = reason
        self._compiled.clear()

    def _unsupported(self, model, guide, args, kwargs) -> str | None:
        module = getattr(model, "__self__", None)
        if kwargs:
            return "the model takes keyword arguments"
        if not (
            isinstance(module, torch.nn.Module)
            and getattr(guide, "__self__", None) is module
            and hasattr(model, "__func__")
        ):
            return "the model and guide are not two methods of one nn.Module"
        own = {id(p) for p in module.parameters()}
        with own_stream(args), torch.no_grad(), poutine.block(), pyro.validation_enabled(False):
            with poutine.trace(param_only=True) as ptr:
                SyncFreeTrace_ELBO.differentiable_loss(self, model, guide, *args)
        foreign = [
            name
            for name, site in ptr.trace.nodes.items()
            if id(site["value"].unconstrained()) not in own and site["value"].requires_grad
        ]
        if foreign:
            return f"pyro.param sites outside the module ({', '.join(sorted(foreign)[:3])})"
        return None

    def _verify(self, fn, module: torch.nn.Module, model, guide, args) -> str | None:
        buffers = {k: b.clone() for k, b in module.named_buffers()}
        try:
            with torch.no_grad(), pyro.validation_enabled(False):
                with own_stream(args), torch.jit.optimized_execution(False):
                    got = float(fn(*args))
                with own_stream(args):
                    want = float(SyncFreeTrace_ELBO.differentiable_loss(self, model, guide, *args))
        finally:
            for k, b in module.named_buffers():
                b.copy_(buffers[k])
        if not abs(got - want) <= 1e-4 * max(1.0, abs(want)):
            return f"the compiled ELBO ({got:.6g}) differs from Trace_ELBO ({want:.6g}) on the same noise"
        return None

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """Return the differentiable negative ELBO (nats, summed over the scaled data plate)."""
        if self.fallback_reason is None and not self._compiled:
            reason = self._unsupported(model, guide, args, kwargs)
            if reason is not None:
                self._fall_back(reason)
        if self.fallback_reason is not None:
            return self._reference.differentiable_loss(model, guide, *args, **kwargs)
        module = model.__self__
        batch = current_minibatch()
        # bound methods are recreated on every attribute access: key on module + function
        key = (
            id(module),
            model.__func__,
            guide.__func__,
            torch.is_grad_enabled(),
            module.training,
            tuple((tuple(a.shape), a.dtype) if torch.is_tensor(a) else repr(a) for a in args),
            None if batch is None else (batch[0], len(batch[1])),
        )
        entry = self._compiled.get(key)
        if entry is None:
            lm = _LossModule(self, module, model, guide)
            try:
                with warnings.catch_warnings(), pyro.validation_enabled(False), own_stream(args):
                    warnings.simplefilter("ignore")
                    fn = torch.jit.trace(lm, tuple(args), check_trace=False)
            except Exception as e:  # noqa: BLE001  (any tracing failure means: run uncompiled)
                first = (str(e).splitlines() or [""])[0][:120]
                self._fall_back(f"tracing failed ({type(e).__name__}{': ' + first if first else ''})")
                return self._reference.differentiable_loss(model, guide, *args)
            entry = self._compiled[key] = [fn, VERIFY_CALLS]
        fn = entry[0]
        if entry[1] > 0:
            entry[1] -= 1
            reason = self._verify(fn, module, model, guide, args)
            if reason is not None:
                self._fall_back(reason)
                return self._reference.differentiable_loss(model, guide, *args)
        # the profiling executor re-optimizes a graph after its first runs, which changes the
        # rounding of the loss: a graph compiled again after a resume would then log other
        # numbers than the uninterrupted run (and the optimized graph is no faster here)
        with torch.jit.optimized_execution(False):
            return fn(*args)

    def loss(self, model, guide, *args, **kwargs):
        """Return the negative ELBO as a float (nats)."""
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """Backpropagate the negative ELBO and return it as a float (nats)."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward(retain_graph=self.retain_graph)
        return float(loss)
