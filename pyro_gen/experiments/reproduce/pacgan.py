"""``pacgan-2d``: Lin, Khetan, Fanti & Oh (2018), PacGAN, Table 1: GAN and PacGAN on the 2-D mixtures.

Ring: 8 Gaussians on the unit circle, std 0.01; grid: 25 Gaussians at ``{-4, -2, 0, 2, 4}^2``,
std 0.05. 2,500 samples per trained generator; a sample is *high quality* within 3 std of its
nearest mode, a mode is *captured* with at least one high-quality sample, and the *reverse KL*
is ``KL(p_gen || uniform)`` of the high-quality samples' histogram over the modes (nats):
:func:`pyro_gen.evaluation.samples.mode_metrics`, whose ``kl_to_uniform`` is this number.
Rows: GAN (no packing), PacGAN2 and PacGAN4 on each set, each over several seeds (the paper
averages 10 trials). Published figures: REFERENCES.md (PacGAN Table 1 [P]). Beside the paper's
columns the table gives the project's within-mode spread and MMD^2 of the same samples.

The networks follow the paper as far as the gan family allows: the generator an MLP of four
ReLU layers of 400 (the paper's has batch norm), the critic three layers of 200 (LeakyReLU 0.2
where the paper has maxout with 5 pieces) reading the ``m`` packed samples concatenated; the
non-saturating GAN loss, Adam with beta1 0.8, 100 packed critic inputs per minibatch (100 m
generated and 100 m real points).
"""

from __future__ import annotations

from typing import Any

from .spec import Metric, Reproduction, Row

#: the paper's training: 400 epochs of 100,000 packed examples in minibatches of 100
PAPER_STEPS = 400_000
PAPER_LR = 1e-4
#: quick budget: generator steps per data set on one CPU thread of the 2-core machine, with
#: minibatches of 100 points for every packing (25 critic inputs for PacGAN4): about 36 ms per
#: step at load 8-10 (measured), so the 30 runs take about an hour; the learning rate decays
#: linearly to 0 over them
QUICK_STEPS = {"ring": 3000, "grid": 3000}
QUICK_LR = 1e-3
QUICK_BATCH = 100
SMOKE_STEPS = 3
SEEDS = {"smoke": (0, 1), "quick": (0, 1, 2, 3, 4), "paper": tuple(range(10))}
PACKED_INPUTS = 100  # critic inputs per minibatch; each holds ``pack`` samples
MODEL = {
    "arch": "mlp",
    "hidden": "400,400,400,400",
    "disc_hidden": "200,200,200",
    "latent_dim": 2,
    "eval_samples": 2500,
}
DATA = ("ring", "grid")
PACKS = (1, 2, 4)
NUM_MODES = {"ring": 8, "grid": 25}


def pacgan_settings(data: str, pack: int):
    """Return the settings function of one row: ``data`` ring | grid, ``pack`` samples per critic input."""
    if data not in DATA or pack not in PACKS:
        raise ValueError(f"unknown row: data {data!r} (ring, grid), pack {pack!r} (1, 2, 4)")

    def settings(budget: str) -> dict[str, dict[str, Any]]:
        if budget not in SEEDS:
            raise ValueError(f"unknown budget {budget!r}; choose one of {', '.join(SEEDS)}")
        train: dict[str, Any] = {"batch_size": PACKED_INPUTS * pack, "seed": 0, "checkpoint_every": 500}
        if budget == "paper":
            steps = PAPER_STEPS
            train.update(steps=steps, lr=PAPER_LR, lr_schedule="constant", checkpoint_every=5000)
        elif budget == "quick":
            steps = QUICK_STEPS[data]
            train.update(steps=steps, lr=QUICK_LR, lr_schedule="linear", batch_size=QUICK_BATCH)
        else:
            steps = SMOKE_STEPS
            train.update(steps=steps, lr=PAPER_LR, lr_schedule="constant")
        train["eval_every"] = max(1, steps // 10)
        trainer = {"loss": "ns", "beta1": 0.8, "beta2": 0.999, "d_steps": 1}
        model = {**MODEL, "pack": pack}
        return {"run": {"binarize": "none"}, "train": train, "trainer": trainer, "model": model}

    return settings


SOURCE = "Lin et al. 2018, PacGAN, Table 1 (10 trials, 2,500 samples)"
LABELS = {1: "GAN", 2: "PacGAN2", 4: "PacGAN4"}
#: (modes captured, high-quality %, reverse KL in nats) per (data, pack); None: not in REFERENCES.md
PUBLISHED: dict[tuple[str, int], tuple[float, float | None, float | None]] = {
    ("ring", 1): (6.3, 98.2, 0.45),
    ("ring", 2): (7.9, None, None),
    ("ring", 4): (7.8, 95.9, 0.07),
    ("grid", 1): (17.3, 94.8, 0.70),
    ("grid", 2): (23.8, None, None),
    ("grid", 4): (24.8, 93.6, 0.04),
}

EXTRA_METRICS = (
    Metric(
        "high_quality_share", "HQ %", ".1f", 100.0, "percent of samples within 3 std of their nearest mode"
    ),
    Metric("kl_to_uniform", "reverse KL", ".2f", 1.0, "nats, KL(high-quality mode histogram || uniform)"),
    Metric(
        "within_mode_spread",
        "spread",
        ".2f",
        1.0,
        "median over covered modes of the samples' RMS spread / the data's std (data itself: 0.97)",
    ),
    Metric(
        "mmd2",
        "MMD^2 x1e3",
        ".1f",
        1000.0,
        "x 1e-3, Gaussian kernel at the modes' std, against the test split",
    ),
)


def _rows() -> tuple[Row, ...]:
    rows = []
    for data in DATA:
        for pack in PACKS:
            modes, hq, kl = PUBLISHED[(data, pack)]
            rows.append(
                Row(
                    name=f"{LABELS[pack].lower()}-{data}",
                    label=f"{LABELS[pack]}, {data} ({NUM_MODES[data]} modes)",
                    published=modes,
                    tag="[P]",
                    source=SOURCE,
                    family="gan",
                    settings=pacgan_settings(data, pack),
                    seeds=SEEDS,
                    published_extra={"high_quality_share": hq, "kl_to_uniform": kl},
                    data=data,
                )
            )
    return tuple(rows)


PACGAN_2D = Reproduction(
    name="pacgan-2d",
    title="Lin, Khetan, Fanti & Oh (2018), PacGAN, Table 1: modes captured on the ring and the grid",
    paper="Lin, Khetan, Fanti & Oh, PacGAN: The power of two samples in generative adversarial networks, "
    "NeurIPS 2018",
    metric="modes captured (of 8 on the ring, 25 on the grid), 2,500 samples",
    units="modes",
    metric_key="modes_captured",
    sign=1.0,
    data="ring, grid",
    rows=_rows(),
    budgets={
        "smoke": f"for the tests only: {SMOKE_STEPS} generator steps per seed, seeds {SEEDS['smoke']}",
        "quick": f"5 seeds per row on one CPU thread: {QUICK_STEPS['ring']} generator steps on the ring, "
        f"{QUICK_STEPS['grid']} on the grid, minibatches of {QUICK_BATCH} points (100/m critic inputs), "
        f"Adam lr {QUICK_LR:g} decayed linearly to 0",
        "paper": f"the paper's protocol: 10 trials, {PAPER_STEPS:,} generator steps (400 epochs of 100,000 "
        f"packed examples, minibatch 100), Adam lr {PAPER_LR:g} constant, beta1 0.8",
    },
    notes=(
        "generator 2-400-400-400-400-2 ReLU MLP without the paper's batch norm; critic 200-200-200 "
        "LeakyReLU(0.2) MLP on the m packed samples concatenated, where the paper uses maxout layers "
        "(5 pieces); latent z ~ N(0, I_2); data standardized for the networks",
        "non-saturating GAN loss, one critic step per generator step, Adam(beta1 0.8, beta2 0.999); "
        "100 critic inputs per minibatch (100 m points for PacGANm)",
        "training points: 10,000 drawn once per seed (the paper: 100,000); samples scored: 2,500",
        "reverse KL = KL of the high-quality samples' mode histogram to the uniform (nats), "
        "metrics.json kl_to_uniform; '-' when no sample is high quality",
        "the paper's standard deviations and PacGAN2's HQ share and KL are not in REFERENCES.md, so "
        "their published cells are '-'; spread and MMD^2 are the project's additions (no published figure)",
    ),
    budget_notes={
        "smoke": ("smoke budget: a test of the machinery, its numbers mean nothing",),
        "quick": (
            "quick budget: 3,000 generator steps instead of the paper's 400,000, at a 10x larger "
            "learning rate decayed linearly to 0; minibatches of 100 points for every packing (the "
            "paper: 100 critic inputs, i.e. 100 m points); 5 seeds instead of 10 trials",
        ),
    },
    extra_metrics=EXTRA_METRICS,
    likelihood=False,
    lower_is_better=False,
    fmt=".1f",
)
