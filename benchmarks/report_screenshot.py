"""Render a run folder's ``index.html`` in headless Chromium and check the screenshot is not blank.

By default a tiny VAE run on the digits (``--steps`` optimizer steps, TensorBoard tracking on)
is fitted into a temporary folder; ``--run RUN`` screenshots an existing run folder instead
(its page is written anew). The page is opened from ``file://`` (no server) at 1200x1600 and
saved as a PNG; the check is on the grey-level pixel variance and the share of dark pixels
(text, table lines, figures), against a blank page rendered in the same run as the reference.
There is no published figure for this: the reference is the blank page.

    .venv/bin/python benchmarks/report_screenshot.py --out benchmarks/results/report_screenshot.json

Prints a Markdown table and writes the JSON and the screenshot (``<out stem>.png``). Needs
``/usr/bin/chromium`` (Debian: ``apt-get install -y chromium``); exits with status 2 without it.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
MIN_VARIANCE = 1e-3  # grey levels in [0, 1]; a blank page has 0
MIN_DARK_SHARE = 0.002  # share of pixels darker than 0.5


def screenshot(page: Path, png: Path, size: tuple[int, int] = (1200, 1600), timeout: float = 120.0) -> float:
    """Save a headless-Chromium screenshot of ``page`` (opened as a ``file://`` URI) to ``png``;
    return the wall seconds it took."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    t0 = time.perf_counter()
    try:
        subprocess.run(
            [
                str(CHROMIUM),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={size[0]},{size[1]}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return time.perf_counter() - t0


def grey_levels(png: Path) -> np.ndarray:
    """Return the screenshot as grey levels in [0, 1], shaped ``(height, width)``."""
    import matplotlib.image as mpimg

    return mpimg.imread(png)[..., :3].mean(axis=-1)


def measure(page: Path, png: Path) -> dict:
    """Screenshot ``page`` into ``png``; return its size, seconds, variance and dark-pixel share."""
    seconds = screenshot(page, png)
    grey = grey_levels(png)
    return {
        "page": str(page),
        "page_kib": page.stat().st_size / 1024,
        "screenshot_seconds": seconds,
        "height": int(grey.shape[0]),
        "width": int(grey.shape[1]),
        "variance": float(grey.var()),
        "dark_share": float((grey < 0.5).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the check; return 0 when the run page is not blank, 1 when it is, 2 without Chromium."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default=None, help="an existing run folder (default: fit a tiny VAE run)")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps of the tiny run")
    p.add_argument("--out", default="benchmarks/results/report_screenshot.json", help="JSON to write")
    args = p.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 2
    from pyro_gen.report import write_run_index

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="report-screenshot-"))
    try:
        if args.run is None:
            from pyro_gen.runs import run_fit

            run = work / "vae-digits"
            t0 = time.perf_counter()
            run_fit(
                "vae", "digits", out=run, steps=args.steps, k=50, eval_points=200, threads=1,
                log_every=10, progress=False, track="tensorboard",
            )  # fmt: skip
            fit_seconds = time.perf_counter() - t0
        else:
            run, fit_seconds = Path(args.run), None
        t0 = time.perf_counter()
        page = write_run_index(run)
        page_seconds = time.perf_counter() - t0
        blank = work / "blank.html"
        blank.write_text("<!DOCTYPE html><html><body></body></html>\n")
        rows = {
            "run page": measure(page, out.with_suffix(".png")),
            "blank page (reference)": measure(blank, work / "blank.png"),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ours = rows["run page"]
    ok = ours["variance"] > MIN_VARIANCE and ours["dark_share"] > MIN_DARK_SHARE
    print("| page | KiB | screenshot s | size | pixel variance | dark share |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['page_kib']:.1f} | {r['screenshot_seconds']:.2f} | {r['width']}x{r['height']} "
            f"| {r['variance']:.5f} | {r['dark_share']:.4f} |"
        )
    print(f"\nnot blank (variance > {MIN_VARIANCE}, dark share > {MIN_DARK_SHARE}): {ok}")
    result = {
        "command": "benchmarks/report_screenshot.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "run": None if args.run is None else str(args.run),
        "steps": None if args.run is not None else args.steps,
        "fit_seconds": fit_seconds,
        "page_write_seconds": page_seconds,
        "rows": rows,
        "thresholds": {"variance": MIN_VARIANCE, "dark_share": MIN_DARK_SHARE},
        "not_blank": ok,
        "screenshot": str(out.with_suffix(".png")),
        "chromium": subprocess.run(
            [str(CHROMIUM), "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "machine": platform.platform(),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
