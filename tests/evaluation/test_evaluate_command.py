"""`pyro-gen evaluate RUN`: resumable, limited, refused with one line; fit finishes a missing evaluation."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from linear_gaussian import closed_form_elbo, exact_log_marginal, linear_gaussian_vae

from pyro_gen.cli import main
from pyro_gen.evaluation import evaluate, likelihood
from pyro_gen.runs import PARTIAL, load_run, load_run_data, read_config

FIT = [
    "fit",
    "vae",
    "--data",
    "digits",
    "--latent-dim",
    "2",
    "--hidden",
    "16",
    "--steps",
    "12",
    "--batch-size",
    "64",
    "--k",
    "8",
    "--no-progress",
]
BLOCKS = 45  # 360 test points, 8 a block with the 16 KiB budget below
REAL_BLOCK = likelihood._importance_block


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained VAE run on digits (fit once, evaluated at k=8)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main([*FIT, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path):
    """A fresh copy of the trained run."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 8 points at k=8 on digits (one 16 KiB candidate: no probe), so a run has 45 blocks."""
    monkeypatch.setattr(likelihood, "CPU_BUDGETS", (2**14,))
    monkeypatch.setattr(likelihood, "_PROBED", {})


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


def _counting_blocks(monkeypatch, fail_after=None, error=KeyboardInterrupt):
    """Count calls of the block function; raise ``error`` on call ``fail_after + 1``."""
    calls = []

    def block(*args, **kwargs):
        if fail_after is not None and len(calls) >= fail_after:
            raise error("stopped here")
        calls.append(1)
        return REAL_BLOCK(*args, **kwargs)

    monkeypatch.setattr(likelihood, "_importance_block", block)
    return calls


EVAL_KEYS = ("test_log_likelihood", "test_bits_per_dim", "test_elbo", "k", "eval_points", "block_points")


def test_interrupted_evaluation_resumes_to_the_numbers_of_an_uninterrupted_one(
    run, tmp_path, small_blocks, monkeypatch, capsys
):
    whole = Path(shutil.copytree(run, tmp_path / "whole"))
    assert main(["evaluate", str(whole), "--no-progress"]) == 0
    expected = _metrics(whole)
    assert expected["eval_points"] == 360 and expected["block_points"] == 8 and expected["k"] == 8

    _counting_blocks(monkeypatch, fail_after=5)
    with pytest.raises(KeyboardInterrupt):
        main(["evaluate", str(run), "--no-progress"])
    saved = json.loads((run / PARTIAL).read_text())
    assert sorted(map(int, saved["blocks"])) == [0, 8, 16, 24, 32]
    calls = _counting_blocks(monkeypatch)
    assert main(["evaluate", str(run), "--no-progress"]) == 0
    assert len(calls) == BLOCKS - 5  # the saved blocks were not recomputed
    assert "(40 done before)" in capsys.readouterr().err
    got = _metrics(run)
    assert {key: got[key] for key in EVAL_KEYS} == {key: expected[key] for key in EVAL_KEYS}
    assert not (run / PARTIAL).exists()
    assert got["eval_seconds"] > 0 and got["steps"] == 12  # the training numbers are kept


PINNED = "from pyro_gen.evaluation import likelihood; likelihood.CPU_BUDGETS = (2**16,); "
PINNED += "from pyro_gen.cli import main; raise SystemExit(main({args!r}))"


@pytest.mark.slow
def test_kill_9_mid_evaluation_then_the_same_command_finishes_it(run):
    """A real kill -9 of `pyro-gen evaluate` (blocks of 4 points), then the same command again."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["evaluate", str(run), "--k", "3000", "--no-progress"]
    cmd = [sys.executable, "-c", PINNED.format(args=args)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / PARTIAL).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    saved = json.loads((run / PARTIAL).read_text())
    assert 0 < len(saved["blocks"]) < 90 and proc.returncode == -signal.SIGKILL
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got = _metrics(run)
    assert not (run / PARTIAL).exists() and got["k"] == 3000 and got["block_points"] == 4
    model, config = load_run(run)
    data = load_run_data(config)
    direct = evaluate(model, data.test, k=3000, seed=0, batch_size=4, chunk_size=saved["block_samples"])
    assert got["test_log_likelihood"] == direct.log_likelihood and got["test_elbo"] == direct.elbo


def test_points_evaluates_exactly_the_first_n(run, small_blocks):
    assert main(["evaluate", str(run), "--points", "50", "--k", "4", "--no-progress"]) == 0
    got = _metrics(run)
    assert got["eval_points"] == 50 and got["k"] == 4
    model, config = load_run(run)
    data = load_run_data(config)
    direct = evaluate(
        model, data.test[:50], k=4, seed=0, batch_size=got["block_points"], chunk_size=got["block_samples"]
    )
    assert direct.num_points == 50
    assert got["test_log_likelihood"] == direct.log_likelihood and got["test_elbo"] == direct.elbo


def test_a_partial_evaluation_of_more_points_is_continued_for_fewer(run, tmp_path, small_blocks, monkeypatch):
    fresh = Path(shutil.copytree(run, tmp_path / "fresh"))
    assert main(["evaluate", str(fresh), "--points", "20", "--no-progress"]) == 0
    _counting_blocks(monkeypatch, fail_after=4)  # blocks 0, 8, 16, 24 of the 360-point evaluation
    with pytest.raises(KeyboardInterrupt):
        main(["evaluate", str(run), "--no-progress"])
    calls = _counting_blocks(monkeypatch)
    assert main(["evaluate", str(run), "--points", "20", "--no-progress"]) == 0
    # 0 and 8 are whole blocks of the 20-point evaluation; 16 held 8 points there, 4 here
    assert len(calls) == 1
    assert _metrics(run)["test_log_likelihood"] == _metrics(fresh)["test_log_likelihood"]


def test_fit_resume_finishes_a_failed_evaluation_without_training(
    tmp_path, small_blocks, monkeypatch, capsys
):
    whole = tmp_path / "whole"
    assert main([*FIT, "--out", str(whole)]) == 0
    run = tmp_path / "run"
    _counting_blocks(monkeypatch, fail_after=3, error=RuntimeError)
    with pytest.raises(RuntimeError, match="stopped here"):
        main([*FIT, "--out", str(run)])
    assert not (run / "metrics.json").exists() and (run / PARTIAL).exists()
    history = (run / "history.csv").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr("pyro_gen.inference.engine.train", no_training)
    calls = _counting_blocks(monkeypatch)
    capsys.readouterr()
    assert main([*FIT, "--out", str(run), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "already at step 12" in err and "(24 done before)" in err
    assert len(calls) == BLOCKS - 3
    got, expected = _metrics(run), _metrics(whole)
    assert got["steps"] == 12 and (run / "history.csv").read_text() == history
    assert {key: got[key] for key in EVAL_KEYS} == {key: expected[key] for key in EVAL_KEYS}
    assert "elbo.png" in got["figures"] and not (run / PARTIAL).exists()
    # once finished, the same command has nothing left to do
    assert main([*FIT, "--out", str(run), "--resume"]) == 0
    assert "evaluated already" in capsys.readouterr().err and len(calls) == BLOCKS - 3


def test_evaluate_finishes_a_fit_that_never_wrote_its_metrics(tmp_path, small_blocks, monkeypatch):
    run = tmp_path / "run"
    _counting_blocks(monkeypatch, fail_after=2, error=RuntimeError)
    with pytest.raises(RuntimeError):
        main([*FIT, "--out", str(run)])
    _counting_blocks(monkeypatch)
    assert main(["evaluate", str(run), "--no-progress"]) == 0
    got = _metrics(run)
    assert got["steps"] == 12 and got["eval_points"] == 360 and got["model"] == "vae"
    assert {"train_elbo", "test_elbo", "test_log_likelihood"} <= set(got) and got["figures"]


@pytest.mark.parametrize(
    "case",
    ["not a run", "k 0", "points 0", "negative seed", "corrupt partial", "partial at another k"],
)
def test_bad_input_is_one_line_and_status_2(case, run, tmp_path, capsys):
    args = ["evaluate", str(run), "--no-progress"]
    match = {
        "not a run": "not a run folder",
        "k 0": "--k must be a positive integer, got 0",
        "points 0": "--points must be a positive integer, got 0",
        "negative seed": "--seed must be a non-negative integer, got -1",
        "corrupt partial": "is not a usable partial evaluation",
        "partial at another k": "holds an unfinished importance evaluation at k=8",
    }[case]
    if case == "not a run":
        args[1] = str(tmp_path)
    elif case == "k 0":
        args += ["--k", "0"]
    elif case == "points 0":
        args += ["--points", "0"]
    elif case == "negative seed":
        args += ["--seed", "-1"]
    elif case == "corrupt partial":
        (run / PARTIAL).write_text('{"format": "pyro-gen-partial-evaluation", "version": 1, "blo')
    else:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(likelihood, "_importance_block", _raise_after_one())
            mp.setattr(likelihood, "CPU_BUDGETS", (2**14,))
            mp.setattr(likelihood, "_PROBED", {})
            with pytest.raises(KeyboardInterrupt):
                main(["evaluate", str(run), "--no-progress"])
        args += ["--k", "16"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pyro-gen: error: ") and match in err, err
    assert "Traceback" not in err


def _raise_after_one():
    calls = []

    def block(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return REAL_BLOCK(*args, **kwargs)

    return block


def test_a_partial_made_for_other_weights_is_discarded_with_a_message(run, small_blocks, monkeypatch, capsys):
    _counting_blocks(monkeypatch, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        main(["evaluate", str(run), "--no-progress"])
    saved = json.loads((run / PARTIAL).read_text())
    saved["model"] = "0" * 64
    (run / PARTIAL).write_text(json.dumps(saved))
    calls = _counting_blocks(monkeypatch)
    assert main(["evaluate", str(run), "--no-progress"]) == 0
    assert "discarding" in capsys.readouterr().err and len(calls) == BLOCKS


def test_a_family_with_its_own_evaluation_goes_through_the_command(tmp_path):
    out = tmp_path / "made"
    assert main(["fit", "made", "--steps", "4", "--hidden", "16", "--out", str(out), "--no-progress"]) == 0
    assert main(["evaluate", str(out), "--points", "30", "--no-progress"]) == 0
    got = _metrics(out)
    assert got["likelihood_kind"] == "exact" and got["eval_points"] == 30
    model, config = load_run(out)
    from pyro_gen.models.autoregressive import exact_log_likelihood

    data = load_run_data(read_config(out))
    assert got["test_log_likelihood"] == pytest.approx(
        exact_log_likelihood(model, data.test[:30])["log_likelihood"], rel=1e-9
    )


def test_probed_block_sizes_keep_small_k_within_tolerance_of_the_exact_marginal(monkeypatch):
    monkeypatch.setattr(likelihood, "_PROBED", {})
    vae, W, b, s = linear_gaussian_vae(seed=3)
    torch.manual_seed(1)
    x = torch.randn(5000, 4) * 1.5
    exact = float(exact_log_marginal(x, W, b, s).mean())
    gap = exact - float(closed_form_elbo(vae, x, W, b, s).mean())
    assert gap > 0.05
    ev = evaluate(vae, x, k=64)
    assert ev.metrics["block_choice"] == "probe" and ev.metrics["block_bytes"] in likelihood.CPU_BUDGETS
    assert ev.metrics["block_points"] < 5000  # several blocks of points, each on its stream
    assert ev.log_likelihood <= exact + 0.005 and abs(ev.log_likelihood - exact) < 0.1 * gap
    for budget in likelihood.CPU_BUDGETS:  # whatever the probe picks
        other = evaluate(vae, x, k=64, memory_budget=budget)
        assert abs(other.log_likelihood - exact) < 0.1 * gap, budget
