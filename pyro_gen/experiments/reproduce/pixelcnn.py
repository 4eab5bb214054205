"""``pixelcnn``: van den Oord, Kalchbrenner & Kavukcuoglu (2016), PixelCNN, test NLL on binarized MNIST.

The paper's PixelCNN (Table 1 and Figure 5 of the paper): a 7x7 type-A masked convolution,
residual blocks (ReLU, 1x1 convolution from 2h to h feature maps, ReLU, type-B masked 3x3
convolution, ReLU, 1x1 convolution back to 2h, added to the block's input), then ReLU, a 1x1
convolution, ReLU and a 1x1 convolution to one logit per pixel, Bernoulli pixels. The
binarized-MNIST figure, 81.30 nats, is for 15 residual layers of 128 filters [S]; the
``paper`` budget reads that as 2h = 128 feature maps in the residual stream (h = 64 inside each
block). The ``quick`` budget trains a much smaller network of the same shape for a few epochs,
because the paper's network costs hours per epoch on one CPU thread (docs/reproduce-pixelcnn.md).
"""

from __future__ import annotations

from typing import Any

from .spec import Reproduction, Row

PAPER_MODEL: dict[str, Any] = {
    "channels": 128,
    "layers": 15,
    "first_kernel": 7,
    "block": "bottleneck",
    "hidden": 64,
}
#: quick budget: 5 bottleneck blocks of 32 feature maps (16 inside); measured in a run on one CPU
#: thread of the 2-core machine at load 4 to 6 (batch 64): about 150 CPU seconds and 300 to 460
#: wall seconds per epoch, so 10 epochs fit about an hour
QUICK_MODEL: dict[str, Any] = {
    "channels": 32,
    "layers": 5,
    "first_kernel": 7,
    "block": "bottleneck",
    "hidden": 16,
}
SMOKE_MODEL: dict[str, Any] = {
    "channels": 4,
    "layers": 1,
    "first_kernel": 7,
    "block": "bottleneck",
    "hidden": 2,
}
MODELS = {"smoke": SMOKE_MODEL, "quick": QUICK_MODEL, "paper": PAPER_MODEL}
PAPER_EPOCHS = 100.0
QUICK_EPOCHS = 10.0
SMOKE_STEPS = 2
EVAL_POINTS = {"smoke": 8, "quick": None, "paper": None}  # None: all 10,000 test images


def pixelcnn_settings(budget: str) -> dict[str, dict[str, Any]]:
    """Return the run settings of the PixelCNN row at ``budget``; ``ValueError`` when unknown."""
    if budget not in MODELS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {', '.join(MODELS)}")
    train: dict[str, Any] = {"batch_size": 64, "lr": 1e-3, "optimizer": "adam", "seed": 0}
    if budget == "paper":
        train["epochs"] = PAPER_EPOCHS
    elif budget == "quick":
        train["epochs"] = QUICK_EPOCHS
    else:
        train["steps"] = SMOKE_STEPS
    run = {"binarize": "static", "k": 1, "eval_points": EVAL_POINTS[budget]}
    return {"run": run, "train": train, "trainer": {}, "model": dict(MODELS[budget])}


ROWS = (
    Row(
        name="pixelcnn",
        label="PixelCNN, 15 residual layers",
        published=81.30,
        tag="[S]",
        source="van den Oord et al. 2016, as cited (REFERENCES.md)",
        family="pixelcnn",
        settings=pixelcnn_settings,
    ),
)

PIXELCNN_REPRODUCTION = Reproduction(
    name="pixelcnn",
    title="van den Oord, Kalchbrenner & Kavukcuoglu (2016): PixelCNN, test NLL on binarized MNIST",
    paper="van den Oord, Kalchbrenner & Kavukcuoglu, Pixel Recurrent Neural Networks, ICML 2016",
    metric="test NLL, exact",
    units="nats per image",
    metric_key="test_log_likelihood",
    sign=-1.0,
    data="mnist",
    rows=ROWS,
    budgets={
        "smoke": f"for the tests only: a 1-block network of 4 feature maps, {SMOKE_STEPS} steps, exact NLL "
        f"of the first {EVAL_POINTS['smoke']} test images",
        "quick": f"{QUICK_MODEL['layers']} residual blocks of {QUICK_MODEL['channels']} feature maps "
        f"({QUICK_MODEL['hidden']} inside), {QUICK_EPOCHS:g} epochs of Adam (lr 1e-3, batch 64) on one CPU "
        "thread, about an hour; exact NLL of all 10,000 test images",
        "paper": f"the paper's architecture: 7x7 type-A convolution, {PAPER_MODEL['layers']} residual blocks "
        f"of {PAPER_MODEL['channels']} feature maps ({PAPER_MODEL['hidden']} inside), two 1x1 output "
        f"layers; {PAPER_EPOCHS:g} epochs of Adam (lr 1e-3, batch 64), for a GPU; exact NLL of all 10,000 "
        "test images",
    },
    notes=(
        "architecture as in the paper's Table 1 and Figure 5 (bottleneck residual blocks, ReLU); "
        "'15 residual layers of 128 filters' is read as 2h = 128 feature maps between the blocks "
        "(h = 64 inside); the other reading (h = 128) is --channels 256 --hidden 128",
        "the output layers have as many feature maps as the residual stream; the input pixels enter "
        "as 2x - 1",
        "data: the paper used the fixed binarization of Salakhutdinov & Murray (2008); ours binarizes "
        "our raw MNIST once with seed 0 (--binarize static)",
        "optimizer, batch size and epochs are ours (Adam 1e-3, batch 64): the paper's are not in our "
        "sources; training uses all 60,000 training images without early stopping",
    ),
    budget_notes={
        "smoke": ("smoke budget: a test of the machinery, its numbers mean nothing",),
        "quick": (
            f"quick budget: a network about 40 times smaller than the paper's and {QUICK_EPOCHS:g} epochs, "
            "so ours lies well above the published NLL",
        ),
    },
)
