"""Worker for tests/inference/test_distributed.py (a module, so spawned processes can import it)."""

import gc
import os

import torch
import torch.distributed as dist

BATCH = 16
LR = 1e-2


def zero_noise() -> None:
    """Fix the reparameterization noise at 0 so losses are deterministic functions of the data."""
    import torch.distributions.normal as normal_mod

    normal_mod._standard_normal = lambda shape, dtype, device: torch.zeros(shape, dtype=dtype, device=device)


def make_data() -> torch.Tensor:
    from pyro_gen.data import load_digits

    return load_digits(binarize="static").train[:200]


def make_vae(seed: int = 0):
    from pyro_gen.models import VAE

    torch.manual_seed(seed)
    return VAE(64, 3, hidden=(16,))


def train_worker(rank: int, world: int, init_file: str, out_dir: str, steps: int, checkpoint: str) -> None:
    from pyro_gen.inference import fit

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        zero_noise()
        vae = make_vae(seed=rank)  # different init per rank: DDP must broadcast rank 0's
        records = []

        def record(info):
            params = [p.detach().clone() for p in vae.parameters()]
            records.append(
                {"step": info.step, "loss": info.loss, "batch": info.batch.clone(), "params": params}
            )

        fit(
            vae,
            make_data(),
            steps=steps,
            batch_size=BATCH,
            lr=LR,
            progress=False,
            callbacks=[record],
            checkpoint=checkpoint,
            checkpoint_every=2,
            seed=0,
        )
        torch.save(records, f"{out_dir}/rank{rank}.pt")
        gc.collect()  # the engine's DistributedDataParallel wrapper goes before its group
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # Leave without interpreter finalization: gloo's worker threads can otherwise be torn
    # down after the interpreter and abort the process ("terminate called without an
    # active exception"), failing a run whose results are already saved.
    os._exit(0)
