"""Two CPU processes (gloo) train the VAE with DistributedDataParallel inside `fit`."""

import distributed_worker as w
import pyro
import pytest
import torch
import torch.multiprocessing as mp

from pyro_gen.inference import fit, load_checkpoint
from pyro_gen.models import minibatch

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    ckpt = tmp / "ckpt.pt"
    mp.spawn(w.train_worker, args=(2, str(tmp / "store"), str(tmp), 4, str(ckpt)), nprocs=2, join=True)
    return [torch.load(tmp / f"rank{r}.pt") for r in range(2)], ckpt


def test_parameters_identical_on_both_ranks_after_every_step(two_rank_run):
    (r0, r1), _ = two_rank_run
    assert [x["step"] for x in r0] == [1, 2, 3, 4] == [x["step"] for x in r1]
    for a, b in zip(r0, r1):
        assert not torch.equal(a["batch"], b["batch"])  # each rank has its own shard
        for p, q in zip(a["params"], b["params"]):
            assert torch.equal(p, q)


def test_step_matches_single_process_on_concatenated_batch(two_rank_run, monkeypatch):
    (r0, r1), _ = two_rank_run
    import torch.distributions.normal as normal_mod

    monkeypatch.setattr(
        normal_mod,
        "_standard_normal",
        lambda shape, dtype, device: torch.zeros(shape, dtype=dtype, device=device),
    )
    vae = w.make_vae(seed=0)  # rank 0's initialisation, which DDP broadcast
    batch = torch.cat([r0[0]["batch"], r1[0]["batch"]])
    opt = torch.optim.Adam(vae.parameters(), lr=w.LR)
    with minibatch(200, torch.arange(batch.shape[0])):
        # the engine's loss is per data point of the 200-row training set
        loss = pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, batch) / 200
    assert loss.item() == pytest.approx((r0[0]["loss"] + r1[0]["loss"]) / 2, rel=1e-5)
    loss.backward()
    opt.step()
    for p, q in zip(vae.parameters(), r0[0]["params"]):
        assert torch.allclose(p, q, atol=1e-6)


def test_two_process_checkpoint_resumes_in_one_process(two_rank_run):
    (r0, _), ckpt = two_rank_run
    state = load_checkpoint(ckpt)
    assert state["loop"]["step"] == 4 and state["loop"]["world"] == 2
    saved = w.make_vae(seed=9)
    saved.load_state_dict(state["module_state"])
    for p, q in zip(saved.parameters(), r0[-1]["params"]):
        assert torch.equal(p, q)
    vae = w.make_vae(seed=5)
    steps = []
    res = fit(
        vae,
        w.make_data(),
        steps=7,
        batch_size=w.BATCH,
        lr=w.LR,
        resume=ckpt,
        progress=False,
        callbacks=[lambda info: steps.append(info.step)],
        seed=0,
    )
    assert steps == [5, 6, 7] and res.steps == 7
    assert all(torch.isfinite(p).all() for p in vae.parameters())
