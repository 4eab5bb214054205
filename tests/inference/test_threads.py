"""The torch thread count of a run: set for its body and restored after, errors included, and the
run's ``--threads`` held through the evaluation after training (``fit``) and by ``pyro-gen
evaluate``, so two runs sharing the cores do not each evaluate on every core."""

import pytest
import torch

from pyro_gen.inference.engine import torch_threads
from pyro_gen.runs import run as run_module
from pyro_gen.runs import run_fit
from pyro_gen.runs.run import evaluate_run

VAE = {"latent_dim": 2, "hidden": [16]}


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


def test_torch_threads_sets_and_restores_even_on_error(two_threads):
    with torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="boom"), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2
    with torch_threads(None) as n:  # None leaves torch's setting alone
        assert n == 2
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="threads must be a positive count"):
            torch_threads(bad)


def _recording_evaluation(monkeypatch):
    seen: list[int] = []
    real = run_module.evaluation_step

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "evaluation_step", spy)
    return seen


def test_the_evaluation_runs_on_the_runs_threads(tmp_path, monkeypatch, two_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen = _recording_evaluation(monkeypatch)
    out = tmp_path / "run"
    metrics = run_fit(
        "vae", "digits", out=out, steps=3, k=4, eval_points=8, threads=1, batch_size=32,
        progress=False, options=VAE,
    )
    assert metrics["threads"] == 1
    assert seen == [1]  # fit's evaluation after training: the run's one thread, not torch's two
    assert torch.get_num_threads() == 2  # and torch's setting is back afterwards
    evaluate_run(out, k=3, progress=False)  # a later evaluation of the folder: the run's threads
    assert seen == [1, 1] and torch.get_num_threads() == 2


def test_without_threads_the_evaluation_keeps_torchs_setting(tmp_path, monkeypatch, two_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen = _recording_evaluation(monkeypatch)
    run_fit(
        "vae", "digits", out=tmp_path / "run", steps=3, k=4, eval_points=8, batch_size=32,
        progress=False, options=VAE,
    )
    assert seen == [2]
