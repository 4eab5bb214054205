"""Checkpoints: written atomically, read back with validation.

The random streams are saved and restored here too (:func:`rng_state`, :func:`set_rng_state`).
A checkpoint is one ``torch.save`` file holding the module state, optimizer and scheduler
state, the relevant part of Pyro's param store, every RNG state and the loop position, so a
resumed run continues with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "pyro-gen-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "module_state", "optimizer_state", "param_store", "rng", "loop")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then rename).

    A crash mid-write leaves the previous checkpoint untouched. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`save_checkpoint`.

    Raises ``FileNotFoundError`` when it is missing and ``ValueError`` naming the file when it
    is corrupt, truncated, or not a pyro-gen checkpoint. Never modifies the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        # weights_only=False: the param store keeps constraint objects; only load
        # checkpoints you wrote yourself (the usual torch.load caveat).
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # any unpickling/zip error means the file is unusable
        raise ValueError(f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} is not a pyro-gen checkpoint")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    if state["version"] > VERSION:
        raise ValueError(f"checkpoint {path} has version {state['version']}, newer than {VERSION}")
    return state


def rng_state() -> dict[str, Any]:
    """Return every random stream's state (torch, CUDA, NumPy's legacy global, Python's)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (saving the legacy global state)
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the streams saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
