"""The evaluation step of a run, resumable: per-point results saved block by block.

:func:`evaluation_step` serves ``fit`` (after training) and ``pyro-gen evaluate``. The
per-point kinds (exact, importance) save every computed block to ``evaluation.partial.json``
in the run folder, tied to the model's weights by :func:`model_fingerprint`, so that an
interrupted evaluation continues where it stopped, with the numbers an uninterrupted one gives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .plan import RunPlan

PARTIAL = "evaluation.partial.json"
PARTIAL_FORMAT = "pyro-gen-partial-evaluation"


def print_line(message: str) -> None:
    """Print one line to stderr, above a progress bar when one is showing."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


def _duration(seconds: float) -> str:
    """Return ``seconds`` as a person reads it: ``"40 s"``, ``"52 min"``, ``"3.1 h"``."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def check_positive(flag: str, value: Any) -> int:
    """Return ``value`` when it is a positive integer, else ``ValueError`` naming ``flag``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{flag} must be a positive integer, got {value!r}")
    return value


def model_fingerprint(model: Any) -> str:
    """Return a SHA-256 hex digest of a model's weights: its module state (an ``nn.Module``),
    else Pyro's param store. Two models with the same weights have the same fingerprint."""
    import pyro
    import torch

    digest = hashlib.sha256(type(model).__name__.encode())
    if isinstance(model, torch.nn.Module):
        items = model.state_dict().items()
    else:
        items = pyro.get_param_store().named_parameters()
    for name, tensor in sorted(items, key=lambda item: item[0]):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_partial(path: Path) -> dict[str, Any] | None:
    """Return the saved state of an unfinished evaluation (None without one); ``ValueError``
    naming the file and what is wrong when it cannot be used."""
    if not path.exists():
        return None

    def bad(why: str) -> ValueError:
        return ValueError(
            f"{path} is not a usable partial evaluation ({why}): delete it to start the evaluation over"
        )

    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"{type(e).__name__}: {e}") from e
    if not isinstance(state, dict) or state.get("format") != PARTIAL_FORMAT:
        raise bad("not written by pyro-gen evaluate")
    if state.get("version") != 1:
        raise bad(f"version {state.get('version')!r}, this pyro-gen reads version 1")
    kinds = {"kind": str, "seed": int, "device": str, "model": str, "block_points": int, "blocks": dict}
    for key, tp in kinds.items():
        if not isinstance(state.get(key), tp) or isinstance(state.get(key), bool):
            raise bad(f"{key!r} is missing or not a {tp.__name__}")
    if state["kind"] not in ("importance", "exact") or state["block_points"] < 1:
        raise bad(f"kind {state['kind']!r}, block_points {state['block_points']!r}")
    if not isinstance(state.get("seconds"), int | float) or not isinstance(state.get("k"), int | None):
        raise bad("'seconds' or 'k' is not a number")
    size = state["block_points"]
    for start, block in state["blocks"].items():
        if not start.isdigit() or int(start) % size or not isinstance(block, dict):
            raise bad(f"block {start!r} does not start a block of {size} points")
        values = [block.get("log_likelihood"), block.get("elbo")]
        if not all(isinstance(v, list) and 0 < len(v) <= size for v in values) or len(values[0]) != len(
            values[1]
        ):
            raise bad(f"block {start} has no per-point values")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for v in values for x in v):
            raise bad(f"block {start} holds a value that is not a number")
    return state


def _write_partial(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def device_of(model: Any) -> str:
    """Return the device type of a module's first parameter (``"cpu"``, ``"cuda"``); else ``"cpu"``."""
    import torch

    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device.type
    return "cpu"


def _resumable(
    model: Any,
    test,
    guide: Callable | None,
    kind: str,
    out: Path,
    *,
    k: int,
    seed: int,
    progress: bool | None,
    hint: str,
    say: Callable[[str], None],
    started: float,
):
    """Evaluate the per-point kinds (exact, importance) block by block, saving every block to
    ``out/PARTIAL`` and continuing the blocks saved there; return ``(Evaluation, seconds)``."""
    import torch

    from ..evaluation import evaluate
    from ..evaluation.likelihood import choose_block_sizes

    path = out / PARTIAL
    n = int(test.shape[0])
    fingerprint, device = model_fingerprint(model), device_of(model)
    k_used = k if kind == "importance" else None
    state = read_partial(path)
    if state is not None and state["model"] != fingerprint:
        say(f"discarding {path}: it was saved for other weights than the model's now")
        path.unlink()
        state = None
    if state is not None:
        wanted = {"kind": kind, "k": k_used, "seed": seed, "device": device}
        if any(state[key] != value for key, value in wanted.items()):
            done = sum(len(b["log_likelihood"]) for b in state["blocks"].values())
            k0, seed0, dev0 = state["k"], state["seed"], state["device"]
            raise ValueError(
                f"{path} holds an unfinished {state['kind']} evaluation at k={k0}, seed {seed0} on {dev0} "
                f"({done} points done), not at k={k_used}, seed {seed} on {device}: "
                f"finish it with --k {k0} --seed {seed0} --device {dev0} "
                "(on fit: --k and --seed), or delete the file to start over"
            )
    if state is None:
        if kind == "importance":
            sizes = choose_block_sizes(model, test, k=k, guide=guide).to_metrics()
        else:
            sizes = {"block_points": min(1024, n)}
        state = {
            "format": PARTIAL_FORMAT,
            "version": 1,
            "kind": kind,
            "k": k_used,
            "seed": seed,
            "device": device,
            "model": fingerprint,
            **sizes,
            "points": n,
            "seconds": 0.0,
            "blocks": {},
        }
    size = state["block_points"]
    completed = {
        int(start): (
            torch.tensor(b["log_likelihood"], dtype=torch.float64),
            torch.tensor(b["elbo"], dtype=torch.float64),
        )
        for start, b in state["blocks"].items()
        if int(start) < n and len(b["log_likelihood"]) == min(size, n - int(start))
    }
    done_before = sum(len(v[0]) for v in completed.values())
    before = float(state["seconds"])
    state["points"] = n
    first: list[bool] = []
    what = f"at k={k}" if kind == "importance" else "(exact log-likelihood)"

    def on_block(start: int, ll, elbo, seconds: float) -> None:
        state["blocks"][str(start)] = {"log_likelihood": ll.tolist(), "elbo": elbo.tolist()}
        state["seconds"] = before + time.perf_counter() - started
        _write_partial(path, state)
        if not first:  # the time estimate, from the first block this process computed
            first.append(True)
            remaining = n - done_before - ll.shape[0]
            total = (time.perf_counter() - started) + remaining * seconds / ll.shape[0]
            already = f" ({done_before} done before)" if done_before else ""
            to_go = " to go" if done_before else ""
            say(f"evaluating {n} test points {what}{already}: about {_duration(total)}{to_go} ({hint})")

    if done_before == n:
        say(f"evaluating {n} test points {what}: all {n} were done before")
    blocks = {"batch_size": size}
    if kind == "importance":
        blocks["chunk_size"] = state["block_samples"]
    ev = evaluate(
        model,
        test,
        k=k,
        guide=guide,
        seed=seed,
        progress=bool(progress),
        completed=completed,
        on_block=on_block,
        **blocks,
    )
    # the sizes as they were chosen (by the probe), not as they were passed back in
    ev.metrics.update({key: state[key] for key in state if key.startswith("block_")})
    seconds = before + time.perf_counter() - started
    path.unlink(missing_ok=True)
    return ev, seconds


def evaluation_step(
    plan: RunPlan,
    model: Any,
    data,
    out: str | os.PathLike,
    *,
    k: int | None = None,
    points: int | None = None,
    seed: int | None = None,
    progress: bool | None = True,
    train_elbo: bool = True,
    hint: str = "",
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate the trained ``model`` of a run on the first ``points`` test points; return the metrics.

    One implementation for ``fit`` (after training) and ``pyro-gen evaluate``. ``k`` (default:
    the run's), ``points`` (default: the run's ``eval_points``, else every test point; more than
    there are means all) and ``seed`` (default: the run's) choose the protocol. A family with
    its own ``evaluate`` hook is scored by it (on the first ``points`` test points). Otherwise
    :func:`pyro_gen.evaluate` scores the model: the per-point kinds (exact, importance) block
    by block, each block drawn from its own random stream (from ``seed`` and the block's first
    index), every computed block saved atomically to ``out/evaluation.partial.json``; a saved
    block is reused instead of recomputed, so an interrupted evaluation continues where it
    stopped with the numbers an uninterrupted one gives, whatever ``points`` was then. A
    partial file made at another ``k``, seed, device or kind is refused with one line, one made
    for other weights is discarded with a message, one that cannot be read is refused; the
    file is removed when the evaluation finishes. After the first block computed, one line
    (to ``say``, default stderr) gives the points, ``k`` and the estimated time, then ``hint``.

    Returns ``test_log_likelihood``, ``test_bits_per_dim``, ``test_elbo`` (nats per data
    point, bits per dimension), ``k``, ``likelihood_kind``, ``eval_points`` (points
    evaluated), ``eval_seed``, ``eval_seconds`` (wall seconds of the whole evaluation, earlier
    interrupted sessions included), the block sizes (``block_points``, ``block_samples``,
    ``block_bytes``, ``block_choice``), ``train_elbo`` (with ``train_elbo=True``, for models
    with a guide) and what the family's hook or the sample metrics add.
    """
    import torch

    from ..evaluation import evaluate, evaluation_kind
    from ..inference.svi import elbo_per_point

    started = time.perf_counter()
    out, family, say = Path(out), plan.family, say or print_line
    k = check_positive("--k", plan.run.k if k is None else k)
    points = plan.run.eval_points if points is None else points
    if points is not None:
        check_positive("--points", points)
    seed = (plan.train.seed or 0) if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    n = int(data.test.shape[0]) if points is None else min(points, int(data.test.shape[0]))
    labels = data.test_labels[:n] if data.test_labels is not None else None
    split = dataclasses.replace(data, test=data.test[:n], test_labels=labels)
    if family.evaluate is not None:
        say(f"evaluating {n} test points with the {family.name} family's own evaluation")
        import inspect

        # a hook that takes ``k`` (importance samples) is given the run's --k
        extra = {"k": k} if "k" in inspect.signature(family.evaluate).parameters else {}
        metrics = dict(family.evaluate(model, split, plan.model, seed, **extra))
        if extra:
            metrics.setdefault("k", k)
        metrics.update(eval_points=n, eval_seed=seed, eval_seconds=time.perf_counter() - started)
        return metrics
    guide = family.guide(model, plan.model) if family.guide is not None else None
    kind = evaluation_kind(model, guide)
    metrics: dict[str, Any] = {}
    if train_elbo and callable(getattr(model, "guide", None)) and callable(getattr(model, "model", None)):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            train_eval = data.train if data.batch_transform is None else data.batch_transform(data.train)
            metrics["train_elbo"] = elbo_per_point(model.model, model.guide, train_eval)
    if kind == "samples":
        say(f"evaluating {n} test points by sample metrics")
        ev = evaluate(model, split, k=k, guide=guide, seed=seed, progress=bool(progress))
        seconds = time.perf_counter() - started
    else:
        ev, seconds = _resumable(
            model,
            split.test,
            guide,
            kind,
            out,
            k=k,
            seed=seed,
            progress=progress,
            hint=hint,
            say=say,
            started=started,
        )
    metrics.update(
        test_elbo=ev.elbo,
        test_log_likelihood=ev.log_likelihood,
        test_bits_per_dim=ev.bits_per_dim,
        k=ev.k,
        likelihood_kind=ev.kind,
        eval_points=n,
        eval_seed=seed,
        eval_seconds=seconds,
    )
    metrics.update(ev.metrics)
    return metrics
