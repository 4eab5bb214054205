"""Write an RGB grid of 64 samples of each finished row of the quick table (channels as R, G, B).

    python stacked_samples.py SRC DST ROW [ROW ...]

``SRC`` is the reproduction's folder (with the checkpoints), ``DST`` the results folder; each
row's figure goes to ``DST/rows/ROW/stacked_samples.png``.
"""

import sys

import matplotlib
import numpy as np
import torch

from pyro_gen.runs import load_run

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, dst = sys.argv[1], sys.argv[2]
for row in sys.argv[3:]:
    model, config = load_run(f"{src}/rows/{row}")
    torch.manual_seed(0)
    x = model.sample(64).reshape(64, 3, 28, 28).permute(0, 2, 3, 1).numpy()
    canvas = np.ones((8 * 29 + 1, 8 * 29 + 1, 3))
    for i in range(64):
        r, c = divmod(i, 8)
        canvas[1 + r * 29 : 1 + r * 29 + 28, 1 + c * 29 : 1 + c * 29 + 28] = x[i]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(canvas, interpolation="nearest")
    ax.axis("off")
    ax.set_title(f"{row}: 64 samples (digit channels as R, G, B)")
    fig.savefig(f"{dst}/rows/{row}/stacked_samples.png", dpi=100, bbox_inches="tight")
    print("wrote", f"{dst}/rows/{row}/stacked_samples.png")
