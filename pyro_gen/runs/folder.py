"""Run folders: the files of a run, refusing to write over one, and loading its model and data back.

``load_run`` rebuilds the trained model of a folder from its ``config.json`` and checkpoint,
``load_run_data`` the data it trained on; ``sample_run`` draws from it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..config import RunConfig
from .evaluation import PARTIAL
from .plan import CHECKPOINT, CONFIG, HISTORY, METRICS, plan_from_dict, read_config
from .training import load_plan_data, restore_model

RUN_FILES = (CONFIG, METRICS, "metrics.md", HISTORY, CHECKPOINT, PARTIAL, "index.html")


def check_out(out: Path, run: RunConfig) -> None:
    """Refuse to write over a run by accident; with ``overwrite``, remove the old run's files."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if run.resume or not out.is_dir():
        return
    old = [name for name in RUN_FILES if (out / name).exists()]
    if old == [CONFIG]:
        # a run that stopped before it saved anything (e.g. refused on its first step): its
        # config.json is written anew, nothing else is there to lose
        return
    if not old:
        return
    if not run.overwrite:
        raise ValueError(
            f"{out} already holds a run ({', '.join(old)}): --resume to continue it, "
            "--overwrite to replace it, or another --out"
        )
    for name in [*RUN_FILES, *_run_figures(out)]:
        if "/" not in str(name) and (out / name).is_file():
            (out / name).unlink()


def load_run_data(config: dict[str, Any]):
    """Return the :class:`~pyro_gen.data.DataSplit` a run trained on, from its ``config.json`` dict."""
    plan = plan_from_dict(config)
    return load_plan_data(plan)


def load_run(run_dir: str | os.PathLike) -> tuple[Any, dict]:
    """Rebuild the trained model of a run folder; return ``(model, config)``.

    ``FileNotFoundError`` when the folder is not a run or holds no checkpoint, ``ValueError``
    when the checkpoint does not fit the model in its ``config.json``.
    """
    import torch

    from ..data import DataSplit

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    plan = plan_from_dict(config)
    info = config.get("data_info") or {}
    if "dim" not in info:
        raise ValueError(f"{run_dir / CONFIG} has no data_info: not a run folder this version can load")
    dim = int(info["dim"])
    stub = DataSplit(
        name=info.get("name", "data"),
        train=torch.linspace(0.25, 0.75, 2).unsqueeze(1).expand(2, dim).contiguous(),
        test=torch.full((1, dim), 0.5),
        shape=tuple(info["shape"]),
        binarized=bool(info.get("binarized", False)),
        num_levels=info.get("num_levels"),
    )
    family = plan.family
    if family.load is None and not (run_dir / CHECKPOINT).is_file():
        raise FileNotFoundError(f"{run_dir} holds no {CHECKPOINT}: the run was never trained")
    model = None if family.load is not None else family.build(stub, plan.model)
    return restore_model(plan, run_dir, model, stub), config


def sample_run(
    run_dir: str | os.PathLike, num: int, out_file: str | os.PathLike, seed: int = 0, label: int | None = None
) -> dict:
    """Draw ``num`` samples from a run's model into ``out_file`` (.npy, shaped like the data).

    ``label``: the class to draw, for class-conditional models (``cvae``, ``m2``); refused
    in one line by a model that draws no class-conditional samples.

    Writes a PNG grid (images) or scatter (2-D data) beside it; returns the written paths.
    Draws whose size is not a data point's (a user program observing part of each row) are
    saved as ``(num, W)``.
    """
    import numpy as np
    import torch

    from ..report import image_grid, plot_2d_samples

    if num <= 0:
        raise ValueError(f"--num must be positive, got {num}")
    out_file = Path(out_file)
    if out_file.suffix != ".npy":
        raise ValueError(f"--out must end in .npy, got {out_file}")
    if out_file.is_dir():
        raise ValueError(f"--out {out_file} is a folder; give a file name ending in .npy")
    figure = out_file.with_suffix(".png")
    if figure.exists() and figure.name in _run_figures(figure.parent):
        raise ValueError(
            f"--out {out_file} would write over the run's own figure {figure}; choose another name"
        )
    model, config = load_run(run_dir)
    if not hasattr(model, "sample"):
        raise ValueError(f"model family {config['family']!r} cannot sample")
    kwargs = {}
    if label is not None:
        import inspect

        if "label" not in inspect.signature(model.sample).parameters:
            raise ValueError(f"--label: the {config['family']} family draws no class-conditional samples")
        kwargs["label"] = label
    torch.manual_seed(seed)
    x = model.sample(num, **kwargs).detach().cpu()
    shape = tuple(config["data_info"]["shape"])
    if x.reshape(num, -1).shape[1] != math.prod(shape):
        # a user's program whose observed sites are not the whole data point (e.g. a regression's
        # response): its draws are saved as they come, one row per draw
        shape = tuple(x.reshape(num, -1).shape[1:])
    arr = x.reshape(num, *shape).numpy()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    np.save(out_file, arr)
    written = {"samples": str(out_file)}
    if len(shape) == 2:
        written["figure"] = str(image_grid(x[:100], out_file.with_suffix(".png"), shape))
    elif shape == (2,):  # the run's test points beside the samples
        written["figure"] = str(plot_2d_samples(load_run_data(config).test, x, figure))
    return written


def _run_figures(folder: Path) -> list[str]:
    """Return the figure names a run folder's ``metrics.json`` lists (none when it is not a run)."""
    try:
        return list(json.loads((folder / "metrics.json").read_text()).get("figures", []))
    except (OSError, ValueError, AttributeError):
        return []
