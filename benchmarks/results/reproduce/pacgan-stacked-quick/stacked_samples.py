"""Write an RGB grid of 64 samples of each finished row of the quick table (channels as R, G, B)."""
import sys
import numpy as np
import torch
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyro_gen.data as data_pkg
from pyro_gen.data.stacked import load_stacked_mnist
real = data_pkg.load_data
data_pkg.load_data = lambda spec, binarize=None, seed=0: load_stacked_mnist(spec.partition(":")[2]) if spec.startswith("stacked-mnist") else real(spec, binarize=binarize, seed=seed)
from pyro_gen.runs import load_run
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
