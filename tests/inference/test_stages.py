"""The stage learning-rate schedule and the Adam settings of TrainConfig."""

import pytest
import torch

from pyro_gen.config import TrainConfig, iwae_stages, parse_stages
from pyro_gen.inference.engine import StageFactor, train
from pyro_gen.inference.svi import SVIObjective
from pyro_gen.models.vae import VAE


def test_parse_stages_and_the_iwae_schedule():
    assert parse_stages("1:1,3:0.5") == [(1.0, 1.0), (3.0, 0.5)]
    stages = parse_stages(iwae_stages())
    assert [e for e, _ in stages] == [1, 3, 9, 27, 81, 243, 729, 2187]
    assert sum(e for e, _ in stages) == 3280
    assert stages[0][1] == 1.0 and stages[-1][1] == pytest.approx(0.1, rel=1e-3)
    for bad in ("1", "1:0", "x:1", "1:1,,2:1", "-1:1"):
        with pytest.raises(ValueError, match="--lr-stages"):
            parse_stages(bad)


def test_config_checks_stage_and_adam_settings():
    with pytest.raises(ValueError, match="--lr-stages goes with"):
        TrainConfig(lr_stages="1:1")
    with pytest.raises(ValueError, match="--lr-stages goes with"):
        TrainConfig(lr_schedule="stages")
    with pytest.raises(ValueError, match="--adam-betas"):
        TrainConfig(adam_betas="0.9")
    with pytest.raises(ValueError, match="adam_eps"):
        TrainConfig(adam_eps=0.0)
    assert TrainConfig(adam_betas="0.99, 0.999").betas() == (0.99, 0.999)


def test_stage_factor_counts_epochs_in_steps():
    f = StageFactor([(1, 1.0), (2, 0.5), (1, 0.25)], steps_per_epoch=3)
    assert [f(s) for s in range(14)] == [1.0] * 3 + [0.5] * 6 + [0.25] * 3 + [0.25] * 2


def _fit(steps, checkpoint, resume=None):
    torch.manual_seed(0)
    data = torch.rand(40, 6).round()
    vae = VAE(6, latent_dim=2, hidden=[5])
    seen = []

    def record(info):
        group = info.optimizer.param_groups[0]
        seen.append((group["lr"], group["betas"], group["eps"]))

    config = TrainConfig(
        steps=steps,
        batch_size=10,
        lr=1e-2,
        lr_schedule="stages",
        lr_stages="1:1,1:0.5,1:0.1",
        adam_betas="0.99,0.999",
        adam_eps=1e-4,
        progress=False,
        checkpoint_every=1,
    )
    train(
        SVIObjective(vae, estimator="reparam"),
        data,
        config,
        checkpoint=checkpoint,
        resume=resume,
        callbacks=[record],
    )
    return vae, seen


def test_stage_schedule_and_adam_settings_in_training_and_resume(tmp_path):
    _, seen = _fit(14, tmp_path / "a.pt")
    # 4 steps per epoch; a callback sees the rate of the next step (the scheduler has stepped)
    lrs = [round(lr, 8) for lr, _, _ in seen]
    assert lrs == [1e-2] * 3 + [5e-3] * 4 + [1e-3] * 7
    assert {(b, e) for _, b, e in seen} == {((0.99, 0.999), 1e-4)}
    straight, _ = _fit(14, tmp_path / "b.pt")
    _fit(6, tmp_path / "c.pt")
    resumed, seen_c = _fit(14, tmp_path / "c.pt", resume=tmp_path / "c.pt")
    assert [round(lr, 8) for lr, _, _ in seen_c] == lrs[6:]
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
