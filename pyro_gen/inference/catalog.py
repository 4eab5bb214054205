"""The names and one-line summaries of the built-in gradient estimators (imports no torch).

:mod:`pyro_gen.inference.estimators` registers a factory for each; ``pyro-gen list`` prints
them without loading torch.
"""

BUILTIN_ESTIMATORS: dict[str, str] = {
    "reparam": "Trace_ELBO: reparameterized ELBO gradient (no host sync per step)",
    "analytic-kl": "TraceMeanField_ELBO: KL in closed form",
    "auto": "the default: jit where the model compiles and checks out, else reparam (with a note)",
    "jit": "Trace_ELBO compiled with torch.jit.trace, checked against Trace_ELBO (fastest on CPU)",
    "tracegraph": "TraceGraph_ELBO (score function with Rao-Blackwellization)",
    "enum": "TraceEnum_ELBO: discrete sites enumerated exactly",
    "score": "score function (REINFORCE) on the same guide",
    "score-baseline": "score function + decaying-average baseline (TraceGraph)",
    "score-nn": "score function + neural baseline b(x) (TraceGraph)",
    "score-loo": "score function, k samples, leave-one-out baseline (score-loo = score-loo:4)",
    "stl": "sticking the landing: path-derivative ELBO gradient",
    "iwae": "IWAE bound, k samples",
    "dreg": "IWAE bound, DReG gradient",
}
