"""What a fit cost, read from its :class:`~pyro_gen.inference.FitResult` and nothing else.

The trainer measures training time directly around the updates (``seconds``, ``cpu_seconds``,
per-step wall times in ``step_ms``) and evaluation and callbacks separately
(``eval_seconds``); comparisons copy those numbers and never derive one time from another.
"""

from __future__ import annotations

from typing import Any

COST_KEYS = (
    "steps",
    "train_seconds",
    "cpu_seconds",
    "eval_seconds",
    "ms_per_step",
    "cpu_ms_per_step",
    "step_ms",
    "threads",
    "device",
)


def fit_costs(result: Any) -> dict[str, Any]:
    """Return the costs of one fit as a JSON-ready dict.

    Keys: ``steps``; ``train_seconds`` and ``cpu_seconds`` (wall and process-CPU seconds of
    the updates alone); ``eval_seconds`` (wall seconds of evaluation and callbacks during
    training, e.g. held-out ELBOs and gradient-variance measurement); ``ms_per_step`` and
    ``cpu_ms_per_step`` (milliseconds per update); ``step_ms`` (per-step wall milliseconds:
    ``median``, ``p10``, ``p90``, ``n``; empty where the trainer does not time single steps);
    ``threads`` (torch intra-op threads) and ``device``.
    """
    return {
        "steps": int(result.steps),
        "train_seconds": float(result.seconds),
        "cpu_seconds": float(result.cpu_seconds),
        "eval_seconds": float(result.eval_seconds),
        "ms_per_step": float(result.ms_per_step),
        "cpu_ms_per_step": float(result.cpu_ms_per_step),
        "step_ms": {k: float(v) for k, v in (result.step_ms or {}).items()},
        "threads": int(result.threads),
        "device": str(result.device),
    }


def history_curve(history: list[dict], y: str, x: str = "seconds") -> tuple[list[float], list[float]]:
    """Return ``(xs, ys)``: the rows of ``history`` that carry ``y``, against ``x`` (training seconds)."""
    pts = [(r[x], r[y]) for r in history if r.get(y) not in (None, "") and r.get(x) is not None]
    return [float(p[0]) for p in pts], [float(p[1]) for p in pts]
