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
    "miwae": "MIWAE: mean of M IWAE bounds of K samples (miwae:MxK; miwae = miwae:8x8)",
    "piwae": "PIWAE: model on the IWAE bound of MxK samples, guide on MIWAE (piwae:MxK; 8x8)",
    "ciwae": "CIWAE: beta ELBO + (1 - beta) IWAE, K samples (ciwae:K:beta; ciwae = ciwae:64:0.5)",
    "renyi": "Renyi alpha bound, K samples; alpha 0 is IWAE, 1 the ELBO (renyi:K:alpha; 5:0.5)",
    "vimco": "VIMCO: IWAE bound, score function with leave-one-out signals (vimco:K; vimco:5)",
    "rws": "reweighted wake-sleep, K samples, wake share of the guide (rws:K:insomnia; rws:5:1)",
}
