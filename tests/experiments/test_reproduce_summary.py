"""benchmarks/reproduce_summary.py: one line per reproduced row of every table, pending rows left out."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location(
        "reproduce_summary", ROOT / "benchmarks/reproduce_summary.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _table(name, rows):
    return {"format": 1, "name": name, "units": "nats", "budget": "quick", "rows": rows}


def test_summary_lists_done_rows_with_their_numbers_and_skips_pending(tmp_path, capsys):
    mod = _load()
    hw = {"cpu": "x", "cpus": 2, "gpu": None, "threads": 1, "load": [2.04, 1.0, 1.0]}
    done = {"label": "VAE, k=1", "published": 86.76, "tag": "[S]", "ours": 88.5, "difference": 1.74}
    done.update(status="done", epochs=300.0, wall_seconds=1800.0, hardware=hw, threads=1)
    seeds = {"label": "GAN, ring", "published": 6.3, "tag": "[P]", "ours": 7.4, "ours_std": 0.55}
    seeds.update(difference=1.1, status="partial: 3 of 5 seeds", epochs=None, hardware=hw)
    pending = {"label": "IWAE, k=50", "published": 84.78, "ours": None, "status": "pending"}
    for folder, table in (("a-quick", _table("a", [done, pending])), ("b-quick", _table("b", [seeds]))):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "table.json").write_text(json.dumps(table))
    assert mod.main(["--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("| a ") or ln.startswith("| b ")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert cells[0] == ["a", "VAE, k=1", "86.76 [S]", "88.50", "+1.74", "quick", "300", "30"] + [
        "2-core CPU, 1 thread, load 2.0",
        "`a-quick`",
    ]
    assert cells[1][:8] == ["b", "GAN, ring", "6.30 [P]", "7.40 ± 0.55", "+1.10", "quick", "-", "-"]
    assert len(cells) == 2
    records = json.loads((tmp_path / "summary.json").read_text())
    assert [r["row"] for r in records] == ["VAE, k=1", "GAN, ring"]
    assert records[0]["wall_minutes"] == pytest.approx(30.0)
    assert (tmp_path / "summary.md").read_text() == out
