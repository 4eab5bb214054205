"""Costs come from the trainer's own clocks: evaluation and callbacks are never training time."""

from __future__ import annotations

import time

import pytest
import torch

from pyro_gen.experiments.costs import fit_costs
from pyro_gen.inference import fit
from pyro_gen.models import VAE

SLEEP = 0.1


def _data(n: int = 256, d: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((n, d), 0.3), generator=g)


def test_sleeping_callback_is_booked_as_evaluation_not_training():
    x = _data()
    log_every, steps = 5, 30
    slept = []

    def sleepy(info):
        if info.step % log_every == 0:
            time.sleep(SLEEP)
            slept.append(info.step)

    def run(callbacks):
        torch.manual_seed(0)
        vae = VAE(12, latent_dim=2, hidden=(8,))
        t0 = time.perf_counter()
        res = fit(
            vae, x, steps=steps, batch_size=32, log_every=log_every, callbacks=callbacks, progress=False
        )
        return res, time.perf_counter() - t0

    run([])  # warm-up: first-call costs (lazy imports, allocator) out of the way
    plain, _ = run([])
    res, wall = run([sleepy])
    total_sleep = SLEEP * len(slept)
    assert len(slept) == steps // log_every
    # the sleep is evaluation time, never training time
    assert res.eval_seconds >= total_sleep
    assert 0 < res.seconds < wall - total_sleep + 0.05
    # training seconds are the timed steps alone: the same run without the callback trains as
    # long, give or take noise far below the time slept
    assert res.step_ms["n"] == steps
    assert res.seconds < plain.seconds + total_sleep / 2
    # history times are cumulative, never decrease, and the last row is the result's total
    secs = [r["seconds"] for r in res.history]
    evals = [r["eval_seconds"] for r in res.history]
    assert secs == sorted(secs) and evals == sorted(evals)
    assert [r["step"] for r in res.history] == list(range(log_every, steps + 1, log_every))
    assert secs[-1] == pytest.approx(res.seconds)
    # every row's eval clock holds all the sleeps up to and including its step
    for row, k in zip(res.history, range(1, len(slept) + 1)):
        assert row["eval_seconds"] >= k * SLEEP
    costs = fit_costs(res)
    assert costs["ms_per_step"] == pytest.approx(1000 * res.seconds / steps)
    assert costs["eval_seconds"] == res.eval_seconds and costs["train_seconds"] == res.seconds


def test_wall_time_per_step_is_at_least_cpu_time_on_one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = _data(512, 64)
        vae = VAE(64, latent_dim=8, hidden=(128,))
        res = fit(vae, x, steps=150, batch_size=128, log_every=50, progress=False)
    finally:
        torch.set_num_threads(n)
    assert res.threads == 1 and res.device == "cpu"
    assert res.cpu_seconds > 0
    # one thread cannot use more CPU than wall time (up to timer resolution)
    assert res.ms_per_step >= 0.95 * res.cpu_ms_per_step - 0.01
    sm = res.step_ms
    assert sm["n"] == 150 and sm["p10"] <= sm["median"] <= sm["p90"]
    # the per-step times are the same clock as the total
    assert sm["p10"] * 150 / 1000 <= res.seconds * 1.0001
    cum_cpu = [r["cpu_seconds"] for r in res.history]
    assert cum_cpu == sorted(cum_cpu) and cum_cpu[-1] == pytest.approx(res.cpu_seconds)
