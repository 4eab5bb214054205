"""``index.html``: a run folder or a comparison folder as one self-contained page.

The page is plain HTML with inline CSS, written with the standard library only: figures are
embedded as base64 PNG (``data:image/png;base64,...``), so the file opens from ``file://``
without a server and survives being mailed on its own. Links to the folder's other files
(and between a comparison and its run folders) are relative.

A run page shows the metrics (every key of ``metrics.json``), the figures, the last rows of
``history.csv``, the settings of ``config.json`` and the folder's files. A comparison page
renders the folder's Markdown reports (headings, paragraphs, lists and pipe tables), its CSV
tables, its figures, and a table of the run folders beneath it with a link to each run's page;
each run page links back to its comparison.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

INDEX = "index.html"
"""The file name of the page in every run and comparison folder."""

HISTORY_ROWS = 10  # the last history rows a run page shows
CSV_ROWS = 50  # the first rows of each CSV table a comparison page shows
RUN_MARKERS = ("metrics.json", "config.json")  # a sub-folder holding one of these is a run
HEADLINE_KEYS = (
    ("test_log_likelihood", "test log p(x), nats/point"),
    ("test_bits_per_dim", "test bits/dim"),
    ("test_elbo", "test ELBO, nats/point"),
    ("train_elbo", "train ELBO, nats/point"),
    ("modes_captured", "modes captured"),
    ("high_quality_share", "high-quality share"),
    ("steps", "optimizer steps"),
    ("seconds", "training seconds"),
)  # the numbers shown large at the top of a run page, where the metrics have them
RUN_SUMMARY_KEYS = (
    "model",
    "data",
    "estimator",
    "steps",
    "seconds",
    "test_log_likelihood",
    "test_elbo",
    "test_bits_per_dim",
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1150px;padding:0 1em;color:#1d1d1f;background:#fff;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ddd;
padding-bottom:.2em;margin-top:1.8em}h3{font-size:1.05em}
.sub{color:#555;margin-top:0}nav{margin:.5em 0 1em}nav a{margin-right:1em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f5}tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.figs{display:flex;flex-wrap:wrap;gap:1.2em}
figure{margin:0;border:1px solid #ddd;padding:.5em;background:#fff}
figure img{max-width:520px;height:auto;display:block}
figcaption{font-size:.85em;color:#444;text-align:center;margin-top:.3em}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
pre{background:#f6f6f8;padding:.6em;overflow:auto}
.scroll{overflow-x:auto}
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.5em .9em;background:#f8f8fb;min-width:9em}
.card strong{display:block;font-size:1.35em}.card span{font-size:.8em;color:#555}
"""


# ----------------------------------------------------------------------------------------
# pieces
# ----------------------------------------------------------------------------------------


def format_cell(value: Any) -> str:
    """Return ``value`` as the (unescaped) text of a table cell: floats to 6 significant digits,
    None and NaN empty, lists and dicts as compact JSON."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    return str(value)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return str(value).strip() != ""


def html_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, links: Sequence[str | None] = ()
) -> str:
    """Return an HTML ``<table>`` of ``rows`` under ``headers``; cells through :func:`format_cell`
    and escaped, numbers right-aligned; ``links[i]`` (a relative URL) links the first cell of row ``i``."""
    out = [
        '<div class="scroll"><table>',
        "<tr>" + "".join(f"<th>{escape(str(h))}</th>" for h in headers) + "</tr>",
    ]
    links = list(links)
    for i, row in enumerate(rows):
        cells = []
        for j, value in enumerate(row):
            text = escape(format_cell(value))
            if j == 0 and i < len(links) and links[i]:
                text = f'<a href="{escape(links[i], quote=True)}">{text}</a>'
            cls = ' class="num"' if _is_number(value) else ""
            cells.append(f"<td{cls}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div>")
    return "\n".join(out)


def embed_png(path: str | os.PathLike, caption: str | None = None) -> str:
    """Return a ``<figure>`` holding the PNG file ``path`` as a base64 ``data:`` URI, with a caption
    (default: the file name). ``ValueError`` when the file is not a PNG."""
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{path} is not a PNG file")
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    name = escape(caption or path.name)
    return (
        f'<figure><img src="{uri}" alt="{name}" title="{escape(path.name, quote=True)}">'
        f"<figcaption>{name}</figcaption></figure>"
    )


_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|(!?)\[([^\]]*)\]\(([^)\s]+)\)")
_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def markdown_images(text: str) -> list[str]:
    """Return the targets of the Markdown images (``![alt](target)``) in ``text``, in order."""
    return _IMAGE.findall(text)


def _inline(text: str, folder: Path | None = None) -> str:
    """Escape ``text`` and render Markdown code spans, bold, links and images: an image whose
    target is a PNG file in ``folder`` is embedded, any other image becomes a link."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(escape(text[pos : m.start()]))
        if m.group(1) is not None:
            out.append(f"<code>{escape(m.group(1))}</code>")
        elif m.group(2) is not None:
            out.append(f"<b>{escape(m.group(2))}</b>")
        else:
            bang, label, target = m.group(3), m.group(4), m.group(5)
            path = folder / target if folder is not None and bang else None
            if path is not None and path.suffix == ".png" and path.is_file():
                try:
                    out.append(embed_png(path, label or path.name))
                    pos = m.end()
                    continue
                except (OSError, ValueError):
                    pass
            out.append(f'<a href="{escape(target, quote=True)}">{escape(label or target)}</a>')
        pos = m.end()
    out.append(escape(text[pos:]))
    return "".join(out)


def _cells(line: str) -> list[str]:
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]


def markdown_to_html(text: str, *, shift: int = 1, folder: str | os.PathLike | None = None) -> str:
    """Return HTML for the Markdown the reports write: ATX headings (moved down ``shift`` levels),
    paragraphs, ``-``/``*`` lists, fenced code and pipe tables; inline code, bold, links and
    images (a PNG in ``folder`` is embedded as base64, other images become links). Everything
    else is shown as text (escaped)."""
    base = Path(folder) if folder is not None else None

    def inline(part: str) -> str:
        return _inline(part, base)

    lines = text.splitlines()
    out: list[str] = []
    para: list[str] = []
    i = 0

    def flush() -> None:
        if para:
            html = inline(" ".join(para))
            out.append(f'<div class="figs">{html}</div>' if html.startswith("<figure") else f"<p>{html}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out.append("<pre>" + escape("\n".join(lines[i + 1 : j])) + "</pre>")
            i = j + 1
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if heading:
            flush()
            level = min(6, len(heading.group(1)) + shift)
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif (
            stripped.startswith("|")
            and i + 1 < len(lines)
            and re.match(r"^\|?[\s:|-]+\|?$", lines[i + 1].strip())
        ):
            flush()
            headers = _cells(stripped)
            j, body = i + 2, []
            while j < len(lines) and lines[j].strip().startswith("|"):
                body.append(_cells(lines[j]))
                j += 1
            rows = ["<tr>" + "".join(f"<th>{inline(h)}</th>" for h in headers) + "</tr>"]
            for row in body:
                cells = "".join(
                    ('<td class="num">' if _is_number(c) else "<td>") + inline(c) + "</td>" for c in row
                )
                rows.append(f"<tr>{cells}</tr>")
            out.append('<div class="scroll"><table>' + "\n".join(rows) + "</table></div>")
            i = j
            continue
        elif re.match(r"^[-*]\s+", stripped):
            flush()
            items = []
            while i < len(lines) and re.match(r"^[-*]\s+", lines[i].strip()):
                items.append("<li>" + inline(re.sub(r"^[-*]\s+", "", lines[i].strip())) + "</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif not stripped:
            flush()
        else:
            para.append(stripped)
        i += 1
    flush()
    return "\n".join(out)


def _page(title: str, body: Sequence[str], subtitle: str = "", nav: Sequence[tuple[str, str]] = ()) -> str:
    links = "".join(f'<a href="{escape(href, quote=True)}">{escape(label)}</a>' for label, href in nav)
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if subtitle:
        head.append(f'<p class="sub">{escape(subtitle)}</p>')
    if links:
        head.append(f"<nav>{links}</nav>")
    return "\n".join([*head, *body, "</body></html>"]) + "\n"


def _write(path: Path, text: str) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _parse_cell(text: str) -> Any:
    """Return a CSV cell as an int or a float where it is one (so tables format it), else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_csv(path: Path) -> tuple[list[str], list[list[Any]]]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return [], []
    return (rows[0], [[_parse_cell(c) for c in row] for row in rows[1:]]) if rows else ([], [])


def _figures(folder: Path, first: Sequence[str] = ()) -> list[Path]:
    """Return the PNG files of ``folder``: those named in ``first`` in that order, then the rest sorted."""
    pngs = {p.name: p for p in sorted(folder.glob("*.png")) if p.is_file()}
    order = [n for n in first if n in pngs] + [n for n in pngs if n not in first]
    return [pngs[n] for n in order]


def _figure_section(figures: Sequence[Path]) -> list[str]:
    if not figures:
        return []
    parts = []
    for p in figures:
        try:
            parts.append(embed_png(p, p.stem.replace("_", " ") + f" ({p.name})"))
        except (OSError, ValueError):
            continue
    return ["<h2>Figures</h2>", '<div class="figs">', *parts, "</div>"] if parts else []


def _files_section(folder: Path, skip: Sequence[str] = (INDEX,)) -> list[str]:
    entries = sorted(p for p in folder.iterdir() if p.name not in skip and not p.name.endswith(".tmp"))
    if not entries:
        return []
    items = []
    for p in entries:
        href = p.name + ("/" if p.is_dir() else "")
        size = "folder" if p.is_dir() else f"{p.stat().st_size / 1024:.1f} KiB"
        items.append(f'<li><a href="{escape(href, quote=True)}">{escape(href)}</a> ({size})</li>')
    return ["<h2>Files</h2>", "<ul>" + "".join(items) + "</ul>"]


def _flatten(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def _is_comparison(folder: Path) -> bool:
    """Whether ``folder`` looks like a comparison: it is no run, and holds a page or a Markdown report."""
    if any((folder / m).is_file() for m in RUN_MARKERS):
        return False
    return (folder / INDEX).is_file() or any(folder.glob("*.md"))


# ----------------------------------------------------------------------------------------
# pages
# ----------------------------------------------------------------------------------------


def write_run_index(
    run_dir: str | os.PathLike, *, title: str | None = None, comparison: str | None = None
) -> Path:
    """Write ``RUN/index.html`` from the run folder's files; return its path.

    The page holds a metrics table (every key of ``metrics.json``, in its order), every PNG of
    the folder embedded (those listed in ``metrics["figures"]`` first), the last
    :data:`HISTORY_ROWS` rows of ``history.csv``, the settings of ``config.json`` (one table
    per section), links to the folder's files, and a link to the comparison page of the folder
    above (``comparison``: its relative URL; by default ``../index.html`` when the folder above
    holds a comparison page or Markdown report and is no run itself). ``FileNotFoundError``
    when ``run_dir`` is not a folder.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"{run} is not a folder")
    metrics = _read_json(run / "metrics.json")
    config = _read_json(run / "config.json")
    family = metrics.get("model") or (config.get("family") if isinstance(config.get("family"), str) else None)
    data = metrics.get("data") or (config.get("run") or {}).get("data")
    heading = title or " on ".join(str(x) for x in (family, data) if x) or run.name
    facts = [
        f"{k} {format_cell(metrics[k])}"
        for k in ("kind", "estimator", "steps", "epochs", "device")
        if metrics.get(k) not in (None, "")
    ]
    if isinstance(metrics.get("seconds"), int | float):
        facts.append(f"{metrics['seconds']:.1f} s of training")
    if comparison is None and _is_comparison(run.resolve().parent):
        comparison = f"../{INDEX}"
    nav = [("back to the comparison", comparison)] if comparison else []
    body: list[str] = []
    cards = [
        f'<div class="card"><strong>{escape(format_cell(metrics[k]))}</strong>'
        f"<span>{escape(label)}</span></div>"
        for k, label in HEADLINE_KEYS
        if isinstance(metrics.get(k), int | float) and not isinstance(metrics.get(k), bool)
    ]
    if cards:
        body.append('<div class="cards">' + "".join(cards) + "</div>")
    if metrics:
        body += ["<h2>Metrics</h2>", html_table(["metric", "value"], [(k, v) for k, v in metrics.items()])]
    else:
        body += ["<h2>Metrics</h2>", "<p>No metrics.json yet: the run has not finished its evaluation.</p>"]
    figures = metrics.get("figures") if isinstance(metrics.get("figures"), list) else []
    body += _figure_section(_figures(run, [str(f) for f in figures]))
    headers, rows = _read_csv(run / "history.csv")
    if headers:
        shown = rows[-HISTORY_ROWS:]
        body += [
            f"<h2>History (last {len(shown)} of {len(rows)} rows)</h2>",
            "<p>Steps are cumulative optimizer steps; seconds are training wall seconds "
            "(the updates only).</p>",
            html_table(headers, shown),
        ]
    if config:
        body.append("<h2>Settings</h2>")
        for section, values in config.items():
            if isinstance(values, Mapping):
                body += [
                    f"<h3>{escape(str(section))}</h3>",
                    html_table(["setting", "value"], _flatten(values)),
                ]
            else:
                body += [html_table(["setting", "value"], [(section, values)])]
    body += _files_section(run)
    return _write(run / INDEX, _page(heading, body, ", ".join(facts), nav))


def _run_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and any((p / m).is_file() for m in RUN_MARKERS))


def write_comparison_index(out_dir: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write ``OUT/index.html`` for a comparison folder from its files; return its path.

    The page renders the folder's Markdown files (the report first: ``comparison.md``,
    ``summary.md``, ``README.md``, then the others sorted), the first :data:`CSV_ROWS` rows of
    each CSV table, every PNG embedded, and a table of the run folders beneath it (sub-folders
    holding ``metrics.json`` or ``config.json``: model, data, steps and the main held-out
    numbers, linked to each run's ``index.html``, written anew with a link back), then links to
    the other files. ``title`` defaults to the first Markdown heading, else the folder name.
    ``FileNotFoundError`` when ``out_dir`` is not a folder.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"{out} is not a folder")
    preferred = ("comparison.md", "report.md", "summary.md", "README.md")
    mds = [out / n for n in preferred if (out / n).is_file()]
    mds += [p for p in sorted(out.glob("*.md")) if p.name not in preferred]
    heading = title
    body: list[str] = []
    shown: set[str] = set()  # figures the Markdown embeds already
    for md in mds:
        text = md.read_text(encoding="utf-8", errors="replace")
        first = re.match(r"^#\s+(.*)$", text.lstrip().splitlines()[0]) if text.strip() else None
        if heading is None and first:
            heading = first.group(1)
        if first and first.group(1) == heading and len(mds) == 1:  # the page title already says it
            text = text.lstrip().split("\n", 1)[1] if "\n" in text.lstrip() else ""
        shown.update(markdown_images(text))
        body += [f"<h2>{escape(md.name)}</h2>"] if len(mds) > 1 else []
        body.append(markdown_to_html(text, shift=1 if len(mds) == 1 else 2, folder=out))
    runs = _run_folders(out)
    if runs:
        rows, links = [], []
        for run in runs:
            write_run_index(run, comparison=f"../{INDEX}")
            metrics = _read_json(run / "metrics.json")
            rows.append([run.name, *(metrics.get(k) for k in RUN_SUMMARY_KEYS)])
            links.append(f"{run.name}/{INDEX}")
        body += ["<h2>Runs</h2>", html_table(["run", *RUN_SUMMARY_KEYS], rows, links=links)]
    body += _figure_section([p for p in _figures(out) if p.name not in shown])
    for path in sorted(out.glob("*.csv")):
        headers, rows = _read_csv(path)
        if headers:
            more = f" (first {CSV_ROWS} of {len(rows)} rows)" if len(rows) > CSV_ROWS else ""
            body += [f"<h2>{escape(path.name)}{more}</h2>", html_table(headers, rows[:CSV_ROWS])]
    body += _files_section(out)
    return _write(out / INDEX, _page(heading or out.name, body))


__all__ = [
    "CSV_ROWS",
    "HISTORY_ROWS",
    "INDEX",
    "embed_png",
    "format_cell",
    "html_table",
    "markdown_images",
    "markdown_to_html",
    "write_comparison_index",
    "write_run_index",
]
