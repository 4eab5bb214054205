"""``pacgan-stacked``: Lin, Khetan, Fanti & Oh (2018), Table 2, modes of stacked MNIST.

Stacked MNIST (:mod:`pyro_gen.data.stacked`): three MNIST digits as the three channels of one
28x28 image, 1000 modes. A DCGAN (``--arch dcgan``: four 5x5 stride-2 layers each way, batch
norm, 100 noise dimensions) is trained with the non-saturating loss, without packing (the
DCGAN row) and with its critic judging pairs of samples stacked on the channel axis
(PacDCGAN2). 26,000 samples are labelled channel by channel by an MNIST classifier trained
here (:mod:`pyro_gen.evaluation.classifier`, its MNIST test accuracy in the table); ours is
the number of the 1000 modes hit at least once, and the KL of the samples' mode frequencies to
the uniform distribution (nats, empty modes contributing 0, as in PacGAN's code) is the extra
column. Published figures: REFERENCES.md (PacGAN Table 2 [P]); the VEEGAN row is listed as not
available.

Protocol [P] (fjxmlzn/PacGAN ``stacked_MNIST_experiments/VEEGAN_experiment``): 128,000
stacked training images, batch 64 (packed inputs: 64 * pack images), Adam lr 2e-4 and beta1
0.5, 50 epochs of 2,000 iterations, 26,000 samples at the end, 10 runs.
"""

from __future__ import annotations

from typing import Any

from .spec import Metric, Reproduction, Row

#: generator steps (each after one critic step): the paper's 50 epochs of 2,000 iterations
PAPER_STEPS = 100_000
#: quick budget: on one thread of the 2-core CPU machine at width 16, 0.22 s (DCGAN) and 0.33 s
#: (PacDCGAN2, 128 images a step) per step at load 7-10 (the quick run; 0.20 and 0.30 s in a bare
#: timing at load 3), so 4,000 steps are 15 and 22 minutes; the classifier (2 epochs, once per
#: process) and the 26,000 samples of the first row took 5 minutes more
STEPS = {"smoke": 3, "quick": 4000, "paper": PAPER_STEPS}
WIDTH = {"smoke": 2, "quick": 16, "paper": 64}
BATCH = {"smoke": 8, "quick": 64, "paper": 64}  # packed inputs per step: pack * BATCH images
EVAL_SAMPLES = {"smoke": 200, "quick": 26_000, "paper": 26_000}
CLASSIFIER_EPOCHS = {"smoke": 1, "quick": 2, "paper": 5}
SEEDS = {"smoke": (0, 1), "paper": tuple(range(10))}  # quick: one run, seed 0
LATENT_DIM = 100
LR = 2e-4
BETA1 = 0.5


def pacgan_settings(pack: int):
    """Return the settings function of one row: the DCGAN with packing ``pack`` (1: no packing)."""

    def settings(budget: str) -> dict[str, dict[str, Any]]:
        if budget not in STEPS:
            raise ValueError(f"unknown budget {budget!r}; choose one of {', '.join(STEPS)}")
        model = {
            "arch": "dcgan",
            "latent_dim": LATENT_DIM,
            "width": WIDTH[budget],
            "pack": pack,
            "eval_samples": EVAL_SAMPLES[budget],
            "classifier_epochs": CLASSIFIER_EPOCHS[budget],
        }
        train = {
            "steps": STEPS[budget],
            "batch_size": BATCH[budget] * pack,
            "lr": LR,
            "lr_schedule": "constant",
            "seed": 0,
        }
        trainer = {"loss": "ns", "beta1": BETA1, "d_steps": 1}
        return {"run": {"binarize": "none"}, "train": train, "trainer": trainer, "model": model}

    return settings


SOURCE = "Lin et al. 2018, Table 2"
KL = Metric("kl_to_uniform", "KL", fmt=".2f", units="nats, KL(samples' modes || uniform over 1000)")
ACCURACY = Metric(
    "classifier_test_accuracy", "classifier accuracy", fmt=".2f", scale=100.0, units="% on MNIST's test set"
)

ROWS = (
    Row(
        name="dcgan",
        label="DCGAN",
        published=99.0,
        tag="[P]",
        source=SOURCE,
        family="gan",
        settings=pacgan_settings(1),
        seeds=SEEDS,
        published_extra={"kl_to_uniform": 3.40},
    ),
    Row(
        name="pacdcgan2",
        label="PacDCGAN2",
        published=1000.0,
        tag="[P]",
        source=SOURCE,
        family="gan",
        settings=pacgan_settings(2),
        seeds=SEEDS,
        published_extra={"kl_to_uniform": 0.06},
    ),
    Row(
        name="veegan",
        label="VEEGAN",
        published=150.0,
        tag="[P]",
        source=SOURCE,
        published_extra={"kl_to_uniform": 2.95},
        unavailable="not available: needs VEEGAN's reconstructor network",
    ),
)

PACGAN_STACKED = Reproduction(
    name="pacgan-stacked",
    title="Lin, Khetan, Fanti & Oh (2018), Table 2: modes of stacked MNIST captured by 26,000 samples",
    paper="Lin, Khetan, Fanti & Oh, PacGAN: The power of two samples in generative adversarial networks, "
    "NeurIPS 2018",
    metric="modes captured (of 1000) by 26,000 samples",
    units="modes",
    metric_key="modes_captured",
    sign=1.0,
    data="stacked-mnist",
    rows=ROWS,
    budgets={
        "smoke": f"for the tests only: {STEPS['smoke']} steps per run, width {WIDTH['smoke']}, "
        f"{EVAL_SAMPLES['smoke']} samples, seeds {SEEDS['smoke']}",
        "quick": f"about an hour for the table on one CPU thread: {STEPS['quick']} generator steps per row "
        f"(the paper: {PAPER_STEPS}), DCGAN width {WIDTH['quick']} (the paper: 64), batch "
        f"{BATCH['quick']} packed inputs, one seed, {EVAL_SAMPLES['quick']} samples",
        "paper": f"the published protocol: {PAPER_STEPS} steps (50 epochs of 2,000) at batch 64 packed "
        f"inputs, DCGAN width 64, Adam lr {LR} beta1 {BETA1}, {EVAL_SAMPLES['paper']} samples, "
        f"{len(SEEDS['paper'])} seeds",
    },
    notes=(
        "DCGAN: 100 noise dimensions, generator linear -> 8w x 2 x 2, four 5x5 stride-2 transposed "
        "convolutions (4w, 2w, w, 3 channels) with batch norm and ReLU; critic four 5x5 stride-2 "
        "convolutions (w, 2w, 4w, 8w) with LeakyReLU(0.2), batch norm on all but the first, a linear "
        "logit; non-saturating loss, Adam lr 2e-4, beta1 0.5, constant rate; PacDCGAN2's critic reads "
        "two samples stacked as 6 channels",
        "one generator step per critic step; the paper's code takes two generator steps per critic step",
        "noise z ~ N(0, I); the paper's is uniform on [-1, 1]",
        "the generator ends in a sigmoid, in the data's [0, 1]; the paper's ends in tanh ([-1, 1]) "
        "against data in [0, 1]",
        "stacked training images draw their digits from MNIST's 60,000 training images (seed 0) and "
        "the classifier trains on the same set; the paper draws from all 70,000 MNIST images",
        "the mode classifier is a small CNN (two 3x3 convolutions, 128 hidden units) trained here for "
        f"{CLASSIFIER_EPOCHS['paper']} epochs ({CLASSIFIER_EPOCHS['quick']} in the quick budget; its MNIST "
        "test accuracy in the table); the paper's is Keras' mnist_cnn demo",
        "ours is read at the end of training; the paper reads its metrics after every epoch",
    ),
    budget_notes={
        "smoke": ("smoke budget: a test of the machinery on a tiny data set, its numbers mean nothing",),
        "quick": (
            f"quick budget: {STEPS['quick']} of the paper's {PAPER_STEPS} steps, networks a quarter "
            "of the paper's width, one seed instead of 10",
        ),
    },
    lower_is_better=False,
    extra_metrics=(KL, ACCURACY),
    likelihood=False,
    fmt=".1f",
)
