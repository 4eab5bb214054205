"""Early stopping on a validation split: which rows are held out, when training stops, which
state is kept, and a killed run resumed bit for bit."""

import pytest
import torch

from pyro_gen.config import TrainConfig
from pyro_gen.inference import load_checkpoint
from pyro_gen.inference.engine import train
from pyro_gen.inference.loss import LossObjective


class _Linear(torch.nn.Module):
    """A linear reconstruction ``x -> W x`` whose training batches' first column is recorded."""

    def __init__(self, dim: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(dim, dim)
        self.seen: list[float] = []
        self.evaluated: list[float] = []

    def loss(self, x):
        (self.seen if self.training else self.evaluated).extend(x[:, 0].tolist())
        return ((self.lin(x) - x) ** 2).sum(-1).mean()


class _Scripted(LossObjective):
    """The loss objective with a held-out ``test_loss`` read off a table by step."""

    def __init__(self, model, table):
        super().__init__(model)
        self.table = table

    def evaluate(self, test_data, ctx):
        super().evaluate(test_data, ctx)
        return {"test_loss": self.table[ctx.step]}


def _data(n: int = 40) -> torch.Tensor:
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(1))
    x[:, 0] = torch.arange(n, dtype=torch.float32)  # each row names itself
    return x


#: held-out loss by step: best at step 3, then three evaluations without improvement
TABLE = {1: 5.0, 2: 4.0, 3: 3.0, 4: 3.0, 5: 3.5, 6: 3.2, 7: 1.0, 8: 0.5, 9: 0.1, 10: 0.1}


def _cfg(**kw) -> TrainConfig:
    base = {"steps": 10, "batch_size": 8, "lr": 0.05, "log_every": 1, "progress": False}
    return TrainConfig(**{**base, **kw})


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_validation_rows_are_the_last_n_and_never_trained_on():
    data, test = _data(40), _data(5) + 1000.0
    model = _Linear()
    train(LossObjective(model), data, _cfg(validation=10), test_data=test)
    # 10 steps of 8 rows, reshuffled every epoch of 3 steps: every one of rows 0..29, no other
    assert len(model.seen) == 80 and sorted(set(model.seen)) == list(range(30))
    # each evaluation saw exactly the last 10 training rows, never the test set
    assert sorted(set(model.evaluated)) == list(range(30, 40))
    assert len(model.evaluated) == 10 * 10


def test_stops_after_patience_evaluations_and_returns_the_best_state(tmp_path):
    model = _Linear()
    result = train(_Scripted(model, TABLE), _data(), _cfg(validation=10, early_stopping=3))
    # best at step 3 (step 4 ties, not an improvement), then steps 4, 5, 6 without improvement
    assert result.steps == 6
    assert [r["step"] for r in result.history] == [1, 2, 3, 4, 5, 6]
    assert [r["best_step"] for r in result.history] == [1, 2, 3, 3, 3, 3]
    best = _params(model)
    reference = _Linear()
    train(_Scripted(reference, TABLE), _data(), _cfg(steps=3, validation=10))
    ref = _params(reference)
    assert all(torch.equal(best[k], ref[k]) for k in ref)
    # the trained-on weights of step 6 differ from the best ones that were returned
    later = _Linear()
    train(_Scripted(later, TABLE), _data(), _cfg(steps=6, validation=10))
    assert not torch.equal(_params(later)["lin.weight"], ref["lin.weight"])


def test_patience_not_reached_trains_to_the_end_and_keeps_the_best():
    model = _Linear()
    result = train(_Scripted(model, TABLE), _data(), _cfg(validation=10, early_stopping=4))
    assert result.steps == 10 and result.history[-1]["best_step"] == 9


def test_killed_early_stopping_run_resumes_bit_for_bit(tmp_path):
    full = tmp_path / "full.pt"
    model_a = _Linear()
    cfg = _cfg(validation=10, early_stopping=3, checkpoint_every=1)
    res_a = train(_Scripted(model_a, TABLE), _data(), cfg, checkpoint=full)

    killed = tmp_path / "killed.pt"

    def kill(info):
        if info.step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_Scripted(_Linear(), TABLE), _data(), cfg, checkpoint=killed, callbacks=[kill])
    state = load_checkpoint(killed)
    assert state["loop"]["step"] == 4
    assert state["loop"]["early_stopping"] == {
        "best_value": 3.0,
        "best_step": 3,
        "bad_evals": 1,
        "stopped": False,
    }
    model_b = _Linear()
    res_b = train(_Scripted(model_b, TABLE), _data(), cfg, checkpoint=killed, resume=killed)
    assert res_b.steps == res_a.steps == 6
    a, b = _params(model_a), _params(model_b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = ("seconds", "cpu_seconds", "eval_seconds")
    rows = [[{k: v for k, v in r.items() if k not in strip} for r in res.history] for res in (res_a, res_b)]
    assert rows[0] == rows[1]
    sa, sb = load_checkpoint(full), load_checkpoint(killed)
    assert sa["loop"]["early_stopping"] == sb["loop"]["early_stopping"]
    assert sa["loop"]["early_stopping"]["stopped"] and sa["best"]["step"] == 3
    assert all(torch.equal(sa["best"]["modules"]["model"][k], a[k]) for k in a)
    # resuming a run that has stopped trains no further and gives the best state again
    model_c = _Linear()
    res_c = train(_Scripted(model_c, TABLE), _data(), cfg, checkpoint=killed, resume=killed)
    assert res_c.steps == 6 and all(torch.equal(_params(model_c)[k], a[k]) for k in a)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"early_stopping": 3}, "--early-stopping needs a held-out set"),
        ({"validation": 0}, "validation must be positive"),
        ({"validation": -5}, "validation must be positive"),
        ({"validation": 5, "early_stopping": -1}, "early_stopping must be positive"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


def test_validation_as_large_as_the_training_set_is_refused():
    with pytest.raises(ValueError, match="--validation 40 leaves no training rows"):
        train(LossObjective(_Linear()), _data(40), _cfg(validation=40))


def test_cli_refuses_early_stopping_without_validation(tmp_path, capsys):
    from pyro_gen.cli import main

    code = main(["fit", "vae", "--out", str(tmp_path / "r"), "--steps", "2", "--early-stopping", "2"])
    assert code == 2
    assert "error: --early-stopping needs a held-out set" in capsys.readouterr().err
