"""``pyro-gen compare collapse`` and its strong-decoder VAE."""

import argparse
import csv
import json
import subprocess
import sys

import pyro.poutine as poutine
import pytest
import torch

from pyro_gen.experiments.collapse import (
    DEFAULT_REMEDIES,
    TABLE_COLUMNS,
    collapse_arguments,
    parse_remedies,
    run,
)
from pyro_gen.models.strong_decoder import ConditionalMADE, StrongDecoderVAE


def _args(*argv):
    p = argparse.ArgumentParser()
    collapse_arguments(p)
    return p.parse_args(list(argv))


def test_flags_import_no_torch():
    code = (
        "import argparse, sys; from pyro_gen.experiments.collapse import collapse_arguments; "
        "collapse_arguments(argparse.ArgumentParser()); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_conditional_made_is_autoregressive_in_x_and_sees_z_everywhere():
    torch.manual_seed(0)
    net = ConditionalMADE(6, 3, hidden=(20, 20))
    x = torch.rand(1, 6, requires_grad=True)
    z = torch.randn(1, 3, requires_grad=True)
    logits = net(x, z)
    for d in range(6):
        gx, gz = torch.autograd.grad(logits[0, d], (x, z), retain_graph=True)
        assert torch.all(gx[0, d:] == 0), d  # logit d sees x_<d only
        assert gz.abs().sum() > 0
    assert (torch.autograd.grad(logits[0, 5], x)[0][0, :5] != 0).any()


def test_strong_decoder_vae_sites_and_checks():
    torch.manual_seed(0)
    vae = StrongDecoderVAE(8, 2, hidden=(10,), decoder_hidden=(12,))
    x = torch.bernoulli(torch.full((5, 8), 0.5))
    guide = poutine.trace(vae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
    assert model.nodes["z"]["value"].shape == (5, 2) and model.nodes["x"]["is_observed"]
    # log p(x | z) is the sum of the autoregressive conditionals
    lp = model.nodes["x"]["fn"].log_prob(x)
    logits = vae.decoder(x, model.nodes["z"]["value"])
    want = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1)
    assert torch.allclose(lp, want)
    assert vae.sample(3).shape == (3, 8)
    with pytest.raises(ValueError, match=r"shape \(N, 8\)"):
        vae.check_data(torch.zeros(4, 7))
    with pytest.raises(ValueError, match="latent_dim must be positive"):
        StrongDecoderVAE(8, 0)


def test_parse_remedies_forms_and_refusals():
    got = dict(parse_remedies(DEFAULT_REMEDIES, total_steps=300))
    assert got["plain"] == {}
    assert got["beta:0.5"] == {"beta": 0.5}
    assert got["warmup"] == {"kl_warmup_steps": 100}
    assert got["cyclical:4"] == {"kl_schedule": "cyclical", "kl_cycles": 4}
    assert got["free-bits:0.5"] == {"free_bits": 0.5}
    assert got["aggressive"] == {"aggressive_encoder": True}
    combo = dict(parse_remedies("free-bits:0.25+warmup:50", 300))
    assert combo == {"free-bits:0.25+warmup:50": {"free_bits": 0.25, "kl_warmup_steps": 50}}
    with pytest.raises(ValueError, match="unknown remedy 'dropout'"):
        parse_remedies("plain,dropout", 10)
    with pytest.raises(ValueError, match="twice"):
        parse_remedies("plain,plain", 10)
    with pytest.raises(ValueError, match="free bits must be a number"):
        parse_remedies("free-bits:lots", 10)
    with pytest.raises(ValueError, match="--free-bits must be a positive"):
        parse_remedies("free-bits:-1", 10)
    with pytest.raises(ValueError, match="empty"):
        parse_remedies(" , ", 10)
    with pytest.raises(ValueError, match="--kl-warmup-steps goes with"):
        parse_remedies("cyclical+warmup:5", 10)


def test_collapse_experiment_on_tiny_data_writes_its_table(tmp_path):
    out = tmp_path / "collapse"
    args = _args(
        "--epochs",
        "1",
        "--batch-size",
        "200",
        "--remedies",
        "plain,free-bits:0.5,aggressive:15,cyclical:2",
        "--latent-dim",
        "4",
        "--hidden",
        "16",
        "--decoder-hidden",
        "16",
        "--eval-points",
        "30",
        "--k",
        "4",
        "--out",
        str(out),
        "--no-progress",
    )
    assert run(args) == 0
    with open(out / "collapse.csv") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == TABLE_COLUMNS
    assert [r[0] for r in rows[1:]] == ["plain", "free-bits:0.5", "aggressive:15", "cyclical:2"]
    assert float(rows[1][TABLE_COLUMNS.index("delta_log_likelihood")]) == 0.0
    for r in rows[1:]:
        assert 0 <= int(r[TABLE_COLUMNS.index("active_units")]) <= 4
        assert float(r[TABLE_COLUMNS.index("mutual_information")]) <= torch.log(torch.tensor(30.0)) + 1e-6
    report = (out / "report.md").read_text()
    assert "| remedy | active units | KL (nats) | I(x; z) (nats) |" in report
    assert "active units" in (out / "index.html").read_text()
    for name in ("test_elbo.png", "train_kl.png", "kl_weight.png", "kl_per_dim_free-bits-0.5.png"):
        assert (out / name).stat().st_size > 0
    saved = json.loads((out / "comparison.json").read_text())
    runs = {r["name"]: r for r in saved["results"]}
    # the cyclical weight starts at 0 and every history row records the weight used
    weights = [row["kl_weight"] for row in runs["cyclical:2"]["history"]]
    assert weights[0] < 1.0 and all(0.0 <= w <= 1.0 for w in weights)
    assert all(row["kl_weight"] == 1.0 for row in runs["plain"]["history"])
    assert len(runs["plain"]["final"]["kl_per_dim"]) == 4


def test_collapse_refuses_bad_flags(tmp_path):
    with pytest.raises(ValueError, match="needs binary image data"):
        run(_args("--data", "moons", "--out", str(tmp_path), "--epochs", "1"))
    with pytest.raises(ValueError, match="unknown remedy"):
        run(_args("--remedies", "plain,magic", "--out", str(tmp_path), "--epochs", "1"))
    with pytest.raises(ValueError, match="--epochs must be positive"):
        run(_args("--epochs", "0", "--out", str(tmp_path)))
