"""index.html of a run and of a comparison: it parses, embeds every figure as a PNG that decodes,
shows every metric, links a comparison to its runs and back, and escapes what it shows."""

import base64
import io
import json
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pyro_gen.inference.result import FitResult  # noqa: E402
from pyro_gen.report import (  # noqa: E402
    markdown_to_html,
    report,
    write_comparison_index,
    write_history_csv,
    write_json,
    write_metrics,
    write_run_index,
)
from pyro_gen.report.html import embed_png, format_cell  # noqa: E402

VOID = {"meta", "img", "br", "hr", "link", "input"}
CHROMIUM = Path("/usr/bin/chromium")


class Page(HTMLParser):
    """Collects images, links, table cells and text; checks that every element is closed in order."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.stack, self.images, self.links, self.cells, self.tags, self.text = [], [], [], [], [], []
        self._cell = None
        self.feed(text)
        self.close()
        assert not self.stack, f"unclosed elements: {self.stack}"

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs)
        if tag == "a":
            self.links.append(attrs.get("href"))
        if tag in ("td", "th"):
            self._cell = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        if tag in ("td", "th"):
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _png_from_data_uri(src):
    assert src.startswith("data:image/png;base64,")
    raw = base64.b64decode(src.split(",", 1)[1], validate=True)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return raw, mpimg.imread(io.BytesIO(raw), format="png")


def _figure(path, title):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [0, 1, 4])
    ax.set(title=title, xlabel="step", ylabel="nats")
    fig.savefig(path, dpi=60)
    plt.close(fig)


def _run_folder(path, metrics=None, rows=15):
    path.mkdir(parents=True)
    metrics = metrics or {
        "model": "vae",
        "data": "digits",
        "kind": "svi",
        "steps": 10 * rows,
        "seconds": 1.5,
        "test_log_likelihood": -27.123456,
        "test_elbo": -28.5,
        "notes": ["a <b> note"],
        "step_ms": {"median": 1.25},
        "checkpoint": None,
        "figures": ["elbo.png", "samples.png"],
    }
    write_metrics(metrics, path)
    write_json(
        {"family": "vae", "run": {"data": "digits", "k": 7}, "train": {"lr": 0.003}}, path / "config.json"
    )
    write_history_csv(
        [{"step": 10 * (i + 1), "train_elbo": -100.0 + i} for i in range(rows)], path / "history.csv"
    )
    for name in ("samples", "elbo", "extra"):
        _figure(path / f"{name}.png", name)
    return metrics


def test_run_page_parses_embeds_every_figure_and_shows_every_metric(tmp_path):
    run = tmp_path / "run"
    metrics = _run_folder(run)
    page_path = write_run_index(run)
    assert page_path == run / "index.html"
    page = Page(page_path.read_text())
    # every PNG of the folder is embedded, byte for byte, and decodes as an image
    embedded = {}
    for img in page.images:
        raw, pixels = _png_from_data_uri(img["src"])
        assert pixels.ndim == 3 and pixels.shape[0] > 10 and pixels.shape[1] > 10
        embedded[img["title"]] = raw
    assert embedded == {p.name: p.read_bytes() for p in run.glob("*.png")}
    assert [img["title"] for img in page.images][:2] == ["elbo.png", "samples.png"]  # metrics' order first
    # every metric of metrics.json, with its value, is a row of the table
    saved = json.loads((run / "metrics.json").read_text())
    assert set(saved) == set(metrics)
    for key, value in saved.items():
        assert key in page.cells
        assert format_cell(value) in page.cells, key
    assert "-27.1235" in page.cells and '["a <b> note"]' in page.cells  # shown as text, escaped
    assert "b" not in page.tags  # the note's <b> is not markup
    # the last 10 of the 15 history rows
    assert "150" in page.cells and "60" in page.cells and "50" not in page.cells
    assert "run.k" not in page.cells and "k" in page.cells and "0.003" in page.cells  # settings by section
    assert "history.csv" in page.links and "checkpoint.pt" not in page.links
    assert not any(link.startswith(("http:", "https:", "/")) for link in page.links)  # readable from file://


def test_run_page_without_metrics_and_bad_input(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    page = Page(write_run_index(run).read_text())
    assert "No metrics.json yet" in "".join(page.text)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        write_run_index(tmp_path / "missing")
    (tmp_path / "fake.png").write_bytes(b"GIF89a not a png")
    with pytest.raises(ValueError, match="is not a PNG file"):
        embed_png(tmp_path / "fake.png")


def test_comparison_page_links_its_runs_and_they_link_back(tmp_path):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "summary.md").write_text(
        "# Families on digits\n\nSome `code` and **bold**.\n\n"
        "| family | bits/dim |\n|---|---|\n| vae | 0.61 |\n| made | 0.55 |\n\n![the curves](curves.png)\n"
    )
    (out / "table.csv").write_text("name,value\nx,1\ny,0.123456789\n")
    _figure(out / "curves.png", "curves")
    for name in ("vae", "made"):
        _run_folder(out / name)
    (out / "notes").mkdir()  # not a run: no metrics.json or config.json
    page = Page(write_comparison_index(out).read_text())
    assert "vae/index.html" in page.links and "made/index.html" in page.links
    assert "notes/index.html" not in page.links
    for name in ("vae", "made"):
        run_page = Page((out / name / "index.html").read_text())
        assert "../index.html" in run_page.links
    assert "Families on digits" in page.text  # the title from the Markdown heading
    assert {"family", "bits/dim", "vae", "0.61", "made", "0.55"} <= set(page.cells)  # the pipe table
    assert {"name", "value", "x", "y", "1", "0.123457"} <= set(page.cells)  # the CSV, numbers formatted
    assert "-27.1235" in page.cells  # a run's held-out number in the runs table
    # the figure the Markdown shows is embedded there, once
    assert [img["alt"] for img in page.images] == ["the curves"]
    assert _png_from_data_uri(page.images[0]["src"])[0] == (out / "curves.png").read_bytes()


def test_report_of_several_results_writes_the_comparison_page(tmp_path):
    def result(steps):
        history = [{"step": s, "seconds": 0.1 * s, "train_elbo": -10.0 + s} for s in range(1, steps + 1)]
        return FitResult(
            model=None, history=history, steps=steps, epochs=1.0, seconds=0.1 * steps, estimator="reparam"
        )

    report({"fast": result(3), "slow": result(5)}, tmp_path, title="two <estimators>")
    page = Page((tmp_path / "index.html").read_text())
    assert "two <estimators>" in page.text  # escaped in the title, shown as text
    assert {"fast", "slow", "ms/step (wall)"} <= set(page.cells)
    assert [img["title"] for img in page.images] == ["curves.png"]


def test_markdown_to_html():
    html = markdown_to_html(
        "# T\n\n- a\n- `b<c>`\n\n```\nx < y\n```\n| a \\| b | c |\n|---|---|\n| 1 | 2 |\n"
    )
    page = Page(html)
    assert page.tags[:1] == ["h2"] and "ul" in page.tags and "pre" in page.tags
    assert page.cells == ["a | b", "c", "1", "2"]
    assert "b<c>" in page.text and "x < y" in page.text


def _screenshot(page: Path, png: Path) -> np.ndarray:
    profile = tempfile.mkdtemp()
    try:
        subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                "--window-size=1200,1600",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return mpimg.imread(png)[..., :3].mean(axis=-1)


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
def test_headless_chromium_renders_the_run_page(tmp_path):
    run = tmp_path / "run"
    _run_folder(run)
    grey = _screenshot(write_run_index(run), tmp_path / "run.png")
    blank_page = tmp_path / "blank.html"
    blank_page.write_text("<!DOCTYPE html><html><body></body></html>")
    blank = _screenshot(blank_page, tmp_path / "blank.png")
    assert grey.shape == (1600, 1200) and blank.var() < 1e-6
    assert grey.var() > 1e-3 and (grey < 0.5).mean() > 0.002  # text, tables and figures drawn


def test_a_fitted_run_folder_has_its_page(tmp_path):
    from pyro_gen.runs import run_fit

    run = tmp_path / "vae"
    metrics = run_fit(
        "vae", "digits", out=run, steps=12, k=3, eval_points=10, threads=1, progress=False,
        options={"latent_dim": 2, "hidden": [16]},
    )  # fmt: skip
    page = Page((run / "index.html").read_text())
    for key, value in json.loads((run / "metrics.json").read_text()).items():
        assert key in page.cells and format_cell(value) in page.cells, key
    assert (
        {img["title"] for img in page.images}
        == set(metrics["figures"])
        == {p.name for p in run.glob("*.png")}
    )
    for img in page.images:
        _png_from_data_uri(img["src"])
