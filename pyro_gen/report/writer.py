"""``report(results, out_dir)``: the one writer of a run's figures and tables.

A result is anything shaped like :class:`pyro_gen.inference.FitResult` (read by attribute:
``kind``, ``history``, ``model``, ``estimator``, ``steps``, ``seconds``, ``cpu_seconds``,
``threads``, ``device``); this module imports no trainer. One result gives a run folder's
files; a dict of named results gives a comparison table and a plot of quality against time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .families import plot_loss_curve
from .figures import (
    image_grid,
    plot_2d_samples,
    plot_elbo_curve,
    plot_latent_manifold,
    plot_latent_scatter,
    plot_log_likelihood_curve,
    plot_quality_vs_seconds,
    reconstruction_grid,
)
from .files import markdown_table, write_history_csv, write_json
from .flows import plot_flow_density
from .gan import plot_gan_losses, plot_mode_coverage
from .html import write_comparison_index

if TYPE_CHECKING:
    from ..data import DataSplit

SAMPLE_SEED = 0  # the seed every sample figure is drawn with (the caller's RNG is left untouched)
MODE_SEED_OFFSET = 12345  # mode-coverage samples use seed + this, the draws the adversarial metrics score
MODE_SAMPLES = 2500  # mode-coverage samples unless metrics["eval_samples"] says otherwise
MODE_METRIC_KEYS = ("modes_captured", "num_modes", "high_quality_share", "kl_to_uniform")

# The quality number of each kind: history keys in order of preference, with their label.
QUALITY: dict[str, tuple[tuple[str, str], ...]] = {
    "svi": (("test_elbo", "held-out ELBO (nats/point)"), ("train_elbo", "train ELBO (nats/point)")),
    "loss": (("test_loss", "held-out loss per point"), ("train_loss", "train loss per point")),
    "adversarial": (("g_loss", "generator loss"),),
    "em": (("log_likelihood", "train log-likelihood (nats/point)"),),
    "nuts": (("accept_prob", "mean acceptance probability"),),
}


def _present(value: Any) -> bool:
    return value is not None and value != ""


def final_quality(result: Any) -> tuple[str | None, float | None]:
    """Return ``(history key, last logged value)`` of the number that measures ``result``'s fit.

    The key depends on the result's ``kind`` (see :data:`QUALITY`: the held-out ELBO for SVI,
    falling back to the train ELBO, the held-out loss for plain losses, the generator loss for
    the adversarial game, the log-likelihood for EM, the acceptance probability for NUTS);
    ``(None, None)`` when the history logs none of them.
    """
    history = list(getattr(result, "history", None) or [])
    for key, _ in QUALITY.get(getattr(result, "kind", "svi"), ()):
        values = [row[key] for row in history if _present(row.get(key))]
        if values:
            return key, float(values[-1])
    return None, None


def _curve_title(result: Any, title: str | None) -> str:
    if title:
        return title
    kind, model = getattr(result, "kind", "svi"), getattr(result, "model", None)
    if kind == "loss":
        return f"{model.kind} autoencoder" if hasattr(model, "kind") else "loss"
    if kind == "adversarial":
        parts = str(getattr(result, "estimator", "")).split(":")
        loss = parts[1] if len(parts) > 1 and parts[0] == "adversarial" else None
        return f"GAN ({loss}, pack {getattr(model, 'pack', 1)})" if loss else "GAN losses"
    if kind == "em":
        return "EM log-likelihood"
    return "ELBO"


def _training_curve(result: Any, out: Path, title: str | None) -> Path | None:
    history = list(getattr(result, "history", None) or [])
    if not history:
        return None
    kind = getattr(result, "kind", "svi")
    heading = _curve_title(result, title)
    if kind == "svi" and "train_elbo" in history[0]:
        return plot_elbo_curve(history, out / "elbo.png", title=heading)
    if kind == "loss" and "train_loss" in history[0]:
        return plot_loss_curve(history, out / "loss.png", title=heading)
    if kind == "adversarial" and "d_loss" in history[0]:
        return plot_gan_losses(history, out / "gan_losses.png", title=heading)
    if kind == "em" and any(_present(r.get("log_likelihood")) for r in history):
        return plot_log_likelihood_curve(history, out / "log_likelihood.png", title=heading)
    return None


def draw_samples(model: Any, num: int) -> torch.Tensor:
    """Return ``num`` samples of ``model`` on the CPU, shaped ``(num, D)``, using the global torch RNG.

    Accepts both conventions of ``sample``: a tensor, or scikit-learn's ``(X, labels)`` pair.
    """
    out = model.sample(num)
    if isinstance(out, tuple | list):
        out = out[0]
    return torch.as_tensor(out).detach().cpu()


def _model_figures(model: Any, data: DataSplit, out: Path) -> list[Path]:
    """Samples, reconstructions and the 2-D latent space, drawn from one seeded RNG stream."""
    written: list[Path] = []
    with torch.random.fork_rng():
        torch.manual_seed(SAMPLE_SEED)
        if hasattr(model, "sample"):
            samples = draw_samples(model, 64 if data.is_image else 2000)
            if data.is_image:
                written.append(image_grid(samples, out / "samples.png", data.shape, title="samples"))
            elif data.dim == 2:
                written.append(plot_2d_samples(data.test, samples, out / "samples.png"))
        if hasattr(model, "reconstruct") and data.is_image:
            x = data.test[:30]
            written.append(
                reconstruction_grid(x, model.reconstruct(x), data.shape, out / "reconstructions.png")
            )
        if getattr(model, "latent_dim", None) == 2 and hasattr(model, "decode") and data.is_image:
            written.append(plot_latent_manifold(model.decode, data.shape, out / "latent_manifold.png"))
            if hasattr(model, "encode"):
                codes = model.encode(data.test)[0]
                written.append(plot_latent_scatter(codes, data.test_labels, out / "latent_scatter.png"))
    return written


def _density_figure(model: Any, data: DataSplit, out: Path) -> Path | None:
    if data.dim != 2 or data.is_image or not (hasattr(model, "log_prob") and hasattr(model, "sample")):
        return None
    with torch.random.fork_rng():
        torch.manual_seed(SAMPLE_SEED)
        samples = draw_samples(model, 2000)
    title = getattr(model, "transform_name", "") or ""
    return plot_flow_density(model.log_prob, data.test, samples, out / "density.png", title=title)


def _mode_figure(
    model: Any, data: DataSplit, out: Path, metrics: Mapping[str, Any] | None, seed: int
) -> Path | None:
    info = data.info or {}
    if not ("means" in info and "std" in info and hasattr(model, "sample")):
        return None
    metrics = metrics or {}
    num = int(metrics.get("eval_samples") or MODE_SAMPLES)
    with torch.random.fork_rng():
        torch.manual_seed(int(seed) + MODE_SEED_OFFSET)
        samples = draw_samples(model, num)
    shown = {k: metrics[k] for k in MODE_METRIC_KEYS} if all(k in metrics for k in MODE_METRIC_KEYS) else None
    return plot_mode_coverage(samples, torch.as_tensor(info["means"]), info["std"], out / "modes.png", shown)


def write_metrics(metrics: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``metrics.json`` and ``metrics.md`` (a two-column name | value table); return both paths."""
    out = Path(out_dir)
    json_path = write_json(dict(metrics), out / "metrics.json")
    md = "# Metrics\n\n" + markdown_table(["metric", "value"], [(k, v) for k, v in metrics.items()])
    md_path = out / "metrics.md"
    md_path.write_text(md)
    return [json_path, md_path]


def _report_one(
    result: Any,
    out: Path,
    data: DataSplit | None,
    metrics: Mapping[str, Any] | None,
    title: str | None,
    seed: int,
) -> list[Path]:
    written = [write_history_csv(list(getattr(result, "history", None) or []), out / "history.csv")]
    curve = _training_curve(result, out, title)
    if curve is not None:
        written.append(curve)
    model = getattr(result, "model", None)
    if data is not None and model is not None:
        written += _model_figures(model, data, out)
        for path in (_density_figure(model, data, out), _mode_figure(model, data, out, metrics, seed)):
            if path is not None:
                written.append(path)
    if metrics is not None:
        written += write_metrics(metrics, out)
    return written


def comparison_rows(results: Mapping[str, Any]) -> list[list[Any]]:
    """Return one table row per named result, in the column order of :data:`COMPARISON_COLUMNS`.

    Times: ``seconds`` is training wall seconds; ms/step are ``1000 * seconds / steps``
    (wall) and ``1000 * cpu_seconds / steps`` (process CPU), formatted to 0.01 ms.
    """
    rows = []
    for name, r in results.items():
        steps = int(getattr(r, "steps", 0) or 0)
        seconds = float(getattr(r, "seconds", 0.0) or 0.0)
        cpu = getattr(r, "cpu_seconds", None)
        key, value = final_quality(r)
        rows.append(
            [
                name,
                getattr(r, "kind", "svi"),
                steps,
                f"{seconds:.2f}",
                f"{1000.0 * seconds / max(1, steps):.2f}",
                "" if cpu is None else f"{1000.0 * float(cpu) / max(1, steps):.2f}",
                getattr(r, "threads", ""),
                getattr(r, "device", ""),
                key or "",
                value,
            ]
        )
    return rows


COMPARISON_COLUMNS = (
    "name",
    "kind",
    "steps",
    "seconds",
    "ms/step (wall)",
    "ms/step (CPU)",
    "threads",
    "device",
    "quality",
    "final",
)


def _report_many(results: Mapping[str, Any], out: Path, title: str | None) -> list[Path]:
    heading = title or "Comparison"
    table = markdown_table(COMPARISON_COLUMNS, comparison_rows(results))
    md = (
        f"# {heading}\n\n"
        "Training wall seconds are measured around the updates only; ms/step = 1000 * seconds / steps. "
        "`final` is the last logged value of the `quality` column's history key.\n\n" + table
    )
    md_path = out / "comparison.md"
    md_path.write_text(md)
    curves: dict[str, list[tuple[float, float]]] = {}
    keys: list[str] = []
    for name, r in results.items():
        key, _ = final_quality(r)
        if key is None:
            continue
        keys += [key] if key not in keys else []
        rows = [row for row in (getattr(r, "history", None) or []) if _present(row.get(key))]
        curves[name] = [
            (float(row["seconds"]), float(row[key])) for row in rows if _present(row.get("seconds"))
        ]
    if len(keys) > 1:
        curves = {f"{n} ({final_quality(results[n])[0]})": pts for n, pts in curves.items()}
    labels = {k: label for spec in QUALITY.values() for k, label in spec}
    ylabel = " / ".join(labels.get(k, k) for k in keys) or "quality"
    fig = plot_quality_vs_seconds(
        curves, out / "curves.png", ylabel, title=f"{heading}: quality against time"
    )
    write_comparison_index(out, title=heading)  # the page over the whole folder, beside the report
    return [md_path, fig]


def report(
    results: Any,
    out_dir: str | os.PathLike,
    *,
    data: DataSplit | None = None,
    metrics: Mapping[str, Any] | None = None,
    title: str | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write the figures and tables of one result, or a comparison of several; return the paths written.

    ``results`` is one fitted result (a :class:`~pyro_gen.inference.FitResult` or anything with
    its attributes) or a dict ``name -> result``.

    One result writes into ``out_dir``: ``history.csv``; the training curve of its kind
    (``elbo.png`` for SVI, ``loss.png``, ``gan_losses.png``, ``log_likelihood.png`` for EM;
    ``title`` replaces its default heading); with ``data`` (a :class:`~pyro_gen.data.DataSplit`),
    what the model offers: ``samples.png`` (image grid, or 2-D scatter beside the test points),
    ``reconstructions.png`` (``reconstruct``), ``latent_manifold.png`` and ``latent_scatter.png``
    (``latent_dim == 2`` with ``decode``/``encode``), ``density.png`` (2-D data, ``log_prob``),
    ``modes.png`` (``data.info`` has ``means`` and ``std``; the mode metrics in ``metrics``
    are shown in its title; ``metrics["eval_samples"]`` samples, default 2500, drawn with
    ``seed + 12345``); with ``metrics``, ``metrics.json`` and ``metrics.md``.

    A dict writes ``comparison.md`` (per name: kind, steps, training seconds, wall and CPU
    ms/step, threads, device, the final quality number of the history), ``curves.png``
    (that quality against training seconds), and returns those two; beside them it writes the
    folder's page ``index.html`` (:func:`~pyro_gen.report.html.write_comparison_index`: the
    table, every figure in the folder and links to the run folders beneath ``out_dir``).

    Samples are drawn with fixed seeds inside :func:`torch.random.fork_rng`, so the caller's
    torch RNG state is the same after the call.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(results, Mapping):
        if not results:
            raise ValueError("report: results is an empty dict; pass at least one named result")
        return _report_many(results, out, title)
    return _report_one(results, out, data, metrics, title, seed)


__all__ = [
    "COMPARISON_COLUMNS",
    "QUALITY",
    "comparison_rows",
    "draw_samples",
    "final_quality",
    "report",
    "write_metrics",
]
