"""Checkpoints: written atomically, read back with validation.

The random streams are saved and restored here too (:func:`rng_state`, :func:`set_rng_state`).
A checkpoint is one ``torch.save`` file holding the module state, optimizer and scheduler
state, the relevant part of Pyro's param store, every RNG state and the loop position, so a
resumed run continues with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
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


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the previous checkpoint (if any) is left as it was.

    ``path`` is the checkpoint, ``reason`` the cause in words (e.g. "No space left on
    device"); ``errno`` is the operating system's error number when one is known.
    """

    def __init__(
        self, path: str | os.PathLike, reason: str, errno: int | None = None, had_previous: bool = True
    ):
        self.path = Path(path)
        self.reason = reason
        self.had_previous = had_previous
        after = "the previous checkpoint is intact" if had_previous else "no checkpoint was written"
        self.message = f"could not write checkpoint {self.path} ({reason}); {after}"
        super().__init__(self.message)
        self.errno = errno

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple:
        return (type(self), (self.path, self.reason, self.errno, self.had_previous))


def _write_failure_reason(e: BaseException) -> tuple[str, int | None]:
    """Return the cause of a failed write in words, and its errno when the system gave one."""
    seen = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:  # torch wraps the file's OSError in a RuntimeError
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.strerror:
            return cur.strerror, cur.errno
        cur = cur.__cause__ or cur.__context__
    if isinstance(e, OSError):
        return str(e) or type(e).__name__, e.errno
    text = _first_line(e)
    if "unexpected pos" in text:
        # PyTorch's zip writer: fewer bytes reached the file than it wrote, almost always a full disk
        detail = text[text.index("unexpected pos") :]
        return f"the file came out short ({detail}): is the disk full?", None
    return f"{type(e).__name__}: {text}", None


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then rename).

    A crash mid-write leaves the previous checkpoint untouched and removes the temporary
    file. Returns the path. A write that fails (a full disk, a folder that cannot be
    written, PyTorch's writer stopping short) raises :class:`CheckpointWriteError`, an
    ``OSError`` with one line naming the file and the cause.
    """
    path = Path(path)
    had_previous = path.is_file()
    state = {"format": FORMAT, "version": VERSION, **state}
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except (OSError, RuntimeError) as e:
        _remove(tmp)
        if isinstance(e, CheckpointWriteError):
            raise
        reason, errno = _write_failure_reason(e)
        raise CheckpointWriteError(path, reason, errno, had_previous=had_previous) from e
    except BaseException:
        _remove(tmp)
        raise
    return path


def _remove(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`save_checkpoint`; return its state dict.

    Raises ``FileNotFoundError`` when it is missing and ``ValueError`` (one line naming the
    file) when it is empty, corrupt, truncated, or not a pyro-gen checkpoint. Never modifies
    the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"checkpoint {path} is empty (0 bytes): it was never completely written")
    try:
        # weights_only=False: the param store keeps constraint objects; only load
        # checkpoints you wrote yourself (the usual torch.load caveat).
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # any unpickling/zip error means the file is unusable
        raise ValueError(
            f"checkpoint {path} is corrupt or truncated ({size} bytes; {type(e).__name__}: {_first_line(e)})"
        ) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} is not a pyro-gen checkpoint")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    if not isinstance(state["version"], int):
        raise ValueError(f"checkpoint {path} has no valid version (got {state['version']!r})")
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


def restore_weights(model, state: dict, path) -> None:
    """Load a checkpoint ``state`` (read from ``path``) into ``model`` and Pyro's param store; return None.

    The module weights go into ``model`` when it is an ``nn.Module`` (then switched to eval
    mode); a checkpoint for another architecture raises one ``ValueError`` naming ``path``.
    A checkpoint of an early-stopping run gives its best state (``state["best"]``).
    """
    import pyro

    if state.get("best") is not None:
        state = state["best"]

    if state["module_state"] is not None and isinstance(model, torch.nn.Module):
        try:
            model.load_state_dict(state["module_state"])
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise ValueError(f"{path} does not match the model in config.json ({first})") from e
        model.eval()
    pyro.get_param_store().set_state(state["param_store"])
