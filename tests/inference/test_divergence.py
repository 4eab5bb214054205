"""The runaway-loss rule and the per-data-point loss scale of the SVI objective."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_gen.config import TrainConfig
from pyro_gen.inference import TrainingDivergedError, fit, load_checkpoint
from pyro_gen.inference.engine import LossWatch, train
from pyro_gen.inference.objective import Objective
from pyro_gen.models import data_plate


def test_loss_watch_rule_at_its_limit():
    watch = LossWatch(factor=10.0, window=5)
    watch.REFRESH = 1  # the median and spread of every window, without caching
    for v in (2.0, 3.0, 4.0):
        assert watch.check("main", v) is None
    # median 3, spread (MAD) 1: the limit is 10 * (3 + 1 + 1) = 50 from the median
    assert watch.check("main", 3.0 + 49.0) is None
    assert watch.check("main", 3.0 + 49.0) is None  # now in the window: median 4, spread 1
    why = watch.check("main", 4.0 + 10.0 * (4.0 + 2.0 + 1.0) + 1.0)
    assert why is not None and "running median 4" in why
    # a runaway value does not enter the window
    assert len(watch.values["main"]) == 5 and max(watch.values["main"]) == 52.0
    # each loss has its own window; factor 0 turns the rule off
    assert watch.check("critic", 1e30) is None
    off = LossWatch(factor=0.0)
    assert off.check("main", 1.0) is None and off.check("main", 1e30) is None


class _Runaway(Objective):
    """A scalar parameter with loss w^2 whose logged loss jumps at a chosen step."""

    kind = "loss"

    def __init__(self, jump_at: int, value: float):
        self.w = torch.nn.Parameter(torch.tensor(1.0))
        self.module = torch.nn.Module()
        self.module.w = self.w
        self.jump_at, self.value = jump_at, value
        self.model = self.module

    def modules(self):
        return {"model": self.module}

    def step(self, ctx):
        ctx.next_batch()
        loss = self.w**2 + 1.0
        if ctx.step + 1 == self.jump_at:
            loss = loss * 0 + self.value
        return {"loss": ctx.update("main", loss, [self.w])}


def test_finite_runaway_loss_stops_before_it_is_applied(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    obj = _Runaway(jump_at=7, value=-8.9e9)
    cfg = TrainConfig(steps=20, batch_size=4, lr=0.01, optimizer="sgd", checkpoint_every=5, progress=False)
    with pytest.raises(TrainingDivergedError, match=r"ran away at step 7.*-8\.9e\+09.*ckpt\.pt"):
        train(obj, torch.zeros(8, 1), cfg, checkpoint=ckpt)
    # the weights are those after step 6: the runaway step's update was never applied
    w = 1.0
    for _ in range(6):
        w -= 0.01 * 2 * w
    assert obj.w.item() == pytest.approx(w, rel=1e-6)
    saved = load_checkpoint(ckpt)
    assert saved["loop"]["step"] == 5 and len(saved["loop"]["loss_watch"]["values"]["main"]) == 5
    # the same run with the rule off trains to the end
    obj = _Runaway(jump_at=7, value=-8.9e9)
    res = train(obj, torch.zeros(8, 1), TrainConfig(steps=20, batch_size=4, divergence_factor=0.0,
                                                     progress=False))
    assert res.steps == 20


def test_resumed_run_keeps_the_loss_window(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    cfg = dict(batch_size=4, lr=0.01, optimizer="sgd", progress=False)
    train(_Runaway(jump_at=99, value=0.0), torch.zeros(8, 1), TrainConfig(steps=5, **cfg), checkpoint=ckpt)
    # the resumed run judges step 6 against the saved window (median about 1.9): a jump to
    # 1e5 is caught at once
    with pytest.raises(TrainingDivergedError, match="ran away at step 6"):
        train(_Runaway(jump_at=6, value=1e5), torch.zeros(8, 1), TrainConfig(steps=10, **cfg),
              checkpoint=ckpt, resume=ckpt)


def test_divergence_factor_is_validated():
    with pytest.raises(ValueError, match="divergence_factor"):
        TrainConfig(divergence_factor=-1.0)
    with pytest.raises(ValueError, match="divergence_factor"):
        TrainConfig(divergence_factor=math.inf)


@pytest.mark.parametrize("estimator", ["reparam", "tracegraph", "jit", "analytic-kl"])
def test_sgd_step_is_on_the_loss_per_data_point(estimator):
    # x_i ~ N(mu, 1) in the data plate: the negative log-likelihood per point is
    # mean_i (x_i - mu)^2 / 2 + const, whose gradient at mu = 0 is -mean(x). One full-batch
    # SGD step of size lr gives mu = lr * mean(x), for any data-set size.
    pyro.clear_param_store()
    x = torch.randn(500, 1) * 0.5 + 3.0

    def model(data):
        mu = pyro.param("mu", torch.tensor(0.0))
        with data_plate(data):
            pyro.sample("x", dist.Normal(mu, 1.0).expand([data.shape[0], 1]).to_event(1), obs=data)

    def guide(data):
        pass

    res = fit(model, x, guide=guide, estimator=estimator, optimizer="sgd", lr=0.5, steps=1,
              batch_size=500, progress=False)
    assert pyro.param("mu").item() == pytest.approx(0.5 * x.mean().item(), rel=1e-5)
    # the history reports the ELBO per data point at the starting point
    expected = float(dist.Normal(0.0, 1.0).log_prob(x).sum() / 500)
    assert res.history[-1]["train_elbo"] == pytest.approx(expected, rel=1e-5)


def test_thread_choice_follows_the_model_size(monkeypatch):
    from pyro_gen.inference.engine import ONE_THREAD_WORK, choose_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)), raising=False)
    # the digits VAE (about 50k weights) and the MNIST-size VAE (about 0.7M) at batch 128: one
    assert choose_threads(50_000, 128) == 1 and choose_threads(700_000, 128) == 1
    assert choose_threads(int(ONE_THREAD_WORK), 2) == 2
    assert choose_threads(int(ONE_THREAD_WORK), 100) == 4  # capped at 4
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert choose_threads(int(ONE_THREAD_WORK), 100) == 2  # never more than the CPUs
    assert choose_threads(10, 10, torch.device("meta")) is None  # an accelerator: torch decides
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads(10, 10) is None  # the user chose


def test_fit_records_the_chosen_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        res = train(_Runaway(jump_at=99, value=0.0), torch.zeros(8, 1),
                    TrainConfig(steps=2, batch_size=4, progress=False))
        assert res.threads == 1 and torch.get_num_threads() == 2  # restored after training
    finally:
        torch.set_num_threads(saved)
