import pytest
import torch

from pyro_gen.data import load_digits
from pyro_gen.evaluation import evaluate
from pyro_gen.inference import fit
from pyro_gen.inference.svi import resolve_device
from pyro_gen.models import VAE

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_resolve_device():
    assert resolve_device(None) is None
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@cuda
def test_fit_and_evaluate_on_gpu_match_cpu_shapes():
    data = load_digits(binarize="static")
    vae = VAE(64, 4, hidden=(32,))
    res = fit(vae, data.train, steps=30, device="cuda", progress=False, test_data=data.test, estimator="jit")
    assert next(vae.parameters()).is_cuda
    assert res.history[-1]["test_elbo"] < 0
    ev = evaluate(vae, data.test[:50], k=500)
    assert ev["per_point"].shape == (50,) and ev["log_likelihood"] >= ev["elbo"] - 0.5


@cuda
def test_gpu_fit_reads_losses_once_per_window_and_matches_every_step_reads():
    """On CUDA the default reads the summed loss every 50 steps; the history equals reading each step."""
    data = load_digits(binarize="static")
    histories = []
    for sync_every in (None, 1):
        torch.manual_seed(0)
        vae = VAE(64, 4, hidden=(32,))
        res = fit(
            vae,
            data.train,
            steps=120,
            device="cuda",
            progress=False,
            log_every=40,
            sync_every=sync_every,
            batch_size=64,
        )
        histories.append([h["train_elbo"] for h in res.history])
    assert histories[0] == pytest.approx(histories[1], rel=1e-5)
