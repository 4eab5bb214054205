"""A compiled ``Trace_ELBO`` for models that are ``nn.Module`` s: the fast path of ``fit``.

``make_estimator("jit")`` returns one (see :mod:`pyro_gen.inference.estimators`).
"""

from __future__ import annotations

import pyro
import pyro.infer as infer
import torch
from pyro.infer import ELBO

from ..models.base import current_minibatch


class _LossModule(torch.nn.Module):
    """Holds the model's module so ``torch.jit.trace`` records its parameters as parameters."""

    def __init__(self, elbo: ELBO, module: torch.nn.Module, model, guide):
        super().__init__()
        self.inner = module
        self._elbo, self._model, self._guide = elbo, model, guide

    def forward(self, *args):
        return infer.Trace_ELBO.differentiable_loss(self._elbo, self._model, self._guide, *args)


class CompiledTrace_ELBO(infer.Trace_ELBO):
    """``Trace_ELBO`` compiled once per input shape with ``torch.jit.trace``.

    The same estimator as ``Trace_ELBO`` (reparameterized gradients where possible). When the
    model and guide are methods of one ``nn.Module`` (as every pyro-gen model is), the whole
    ELBO (both programs, every ``log_prob``, the sampling) is traced into a TorchScript graph
    that shares the module's parameters, so each later step runs without Pyro's Python-level
    effect handlers or param-store look-ups. Pyro's ``JitTrace_ELBO`` passes every parameter
    through the param store on each call, which is where its remaining overhead lives; this
    class is written here because Pyro has no module-level compiled ELBO. Models whose
    structure depends on the data's values (Python control flow on tensors) must not use it.
    Other model/guide pairs fall back to ``JitTrace_ELBO``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._compiled: dict = {}
        self._fallback: infer.JitTrace_ELBO | None = None

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """Return the differentiable negative ELBO (nats, summed over the scaled data plate)."""
        import warnings

        module = getattr(model, "__self__", None)
        if (
            kwargs
            or not isinstance(module, torch.nn.Module)
            or getattr(guide, "__self__", None) is not module
            or not hasattr(model, "__func__")
        ):
            if self._fallback is None:
                self._fallback = infer.JitTrace_ELBO(
                    num_particles=self.num_particles, vectorize_particles=self.vectorize_particles
                )
            if isinstance(module, torch.nn.Module):
                pyro.module("model", module)
            return self._fallback.differentiable_loss(model, guide, *args, **kwargs)
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
        fn = self._compiled.get(key)
        if fn is None:
            lm = _LossModule(self, module, model, guide)
            with warnings.catch_warnings(), pyro.validation_enabled(False):
                warnings.simplefilter("ignore")
                fn = torch.jit.trace(lm, tuple(args), check_trace=False)
            self._compiled[key] = fn
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
