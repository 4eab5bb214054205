"""Resume is bit-identical for every registered estimator, stopped inside an epoch."""

import pytest
import torch

from pyro_gen.data import load_digits
from pyro_gen.inference import fit, load_checkpoint
from pyro_gen.inference.estimators import estimator_names
from pyro_gen.models import VAE

# multi-sample estimators run with 3 samples; the rest with one
SPECS = [f"{n}:3" if n in ("iwae", "dreg", "score-loo") else n for n in estimator_names()]


class Interrupt(Exception):
    pass


def _vae(seed):
    torch.manual_seed(seed)
    return VAE(64, 3, hidden=(16,))


@pytest.mark.parametrize("spec", SPECS)
def test_resume_mid_epoch_is_bit_identical(spec, tmp_path):
    data = load_digits(binarize="dynamic")
    # 1437 rows in batches of 100: 14 steps an epoch; the checkpoint at step 5 and the
    # interruption at step 8 both fall inside the first epoch, the run ends inside the second
    kw = dict(
        estimator=spec,
        steps=17,
        batch_size=100,
        lr=3e-3,
        transform=data.batch_transform,
        test_data=data.test[:50],
        log_every=3,
        progress=False,
        seed=11,
    )
    ref_model = _vae(0)
    ref = fit(ref_model, data.train, **kw)

    def stop(info):
        if info.step == 8:
            raise Interrupt

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(Interrupt):
        fit(_vae(0), data.train, checkpoint=ckpt, checkpoint_every=5, callbacks=[stop], **kw)
    assert load_checkpoint(ckpt)["loop"]["step"] == 5
    resumed_model = _vae(1)  # another initialization: everything must come from the checkpoint
    res = fit(resumed_model, data.train, checkpoint=ckpt, resume=ckpt, **kw)
    assert [r["train_elbo"] for r in res.history] == [r["train_elbo"] for r in ref.history]
    assert [r["test_elbo"] for r in res.history] == [r["test_elbo"] for r in ref.history]
    for (name, a), b in zip(ref_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
