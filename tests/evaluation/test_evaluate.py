"""evaluate(): one result type for every model, exact / importance / sample kinds against closed forms."""

import math

import pytest
import torch
from linear_gaussian import exact_log_marginal, linear_gaussian_vae

from pyro_gen.data import ring_of_gaussians
from pyro_gen.data.synthetic import ring_means
from pyro_gen.evaluation import Evaluation, evaluate
from pyro_gen.models.autoregressive import MADE, exact_log_likelihood
from pyro_gen.models.flows import FlowDensity
from pyro_gen.models.gan import GAN
from pyro_gen.models.gmm import MixtureParameters


def _tiny_flow(dim=2):
    torch.manual_seed(0)
    return FlowDensity(dim, transform="affine_coupling", depth=2, hidden=(8,))


def _gan(dim=2):
    torch.manual_seed(0)
    return GAN.for_data(dim, hidden=(8,))


def test_one_result_type_for_flow_vae_and_gan():
    x = torch.randn(40, 2)
    vae, *_ = linear_gaussian_vae(input_dim=2, latent_dim=1)
    evs = {
        "flow": evaluate(_tiny_flow(), x),
        "vae": evaluate(vae, x, k=50),
        "gan": evaluate(_gan(), x, num_samples=200),
    }
    assert {name: type(ev) for name, ev in evs.items()} == dict.fromkeys(evs, Evaluation)
    assert {name: ev.kind for name, ev in evs.items()} == {
        "flow": "exact",
        "vae": "importance",
        "gan": "samples",
    }
    assert evs["vae"].k == 50 and evs["flow"].k is None and evs["gan"].k is None
    assert evs["gan"].log_likelihood is None and evs["gan"].metrics["frechet_distance_raw"] > 0
    for ev in evs.values():
        assert ev.num_points == 40 and ev.seconds > 0
        d = ev.to_dict()
        assert set(d) == {
            "kind",
            "log_likelihood",
            "bits_per_dim",
            "elbo",
            "k",
            "num_points",
            "seconds",
            "metrics",
        }
    for name in ("flow", "vae"):
        ev = evs[name]
        assert ev.bits_per_dim == pytest.approx(-ev.log_likelihood / (2 * math.log(2)))


def test_exact_flow_equals_its_own_log_likelihood():
    flow = _tiny_flow()
    x = torch.randn(30, 2) * 2
    ev = evaluate(flow, x, batch_size=7)  # blocks of rows must not change the value
    own = flow.log_likelihood(x).double()
    assert ev.log_likelihood == pytest.approx(float(own.mean()), rel=1e-6)
    assert torch.allclose(ev.per_point, own, atol=1e-5)
    assert ev.elbo == pytest.approx(ev.log_likelihood)  # no latents: the ELBO is exact


def test_exact_made_equals_exact_log_likelihood():
    torch.manual_seed(0)
    made = MADE(6, hidden=(16,))
    x = torch.bernoulli(torch.full((25, 6), 0.4))
    ev = evaluate(made, x)
    assert ev.kind == "exact"
    assert ev.log_likelihood == pytest.approx(exact_log_likelihood(made, x)["log_likelihood"], rel=1e-6)


def test_gmm_exact_value_is_the_logsumexp_by_hand():
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    locs = torch.tensor([[0.0, 0.0], [3.0, 1.0], [-2.0, 2.0]], dtype=torch.float64)
    sds = torch.tensor([[1.0, 0.5], [0.7, 0.7], [2.0, 1.0]], dtype=torch.float64)
    mixture = MixtureParameters(weights, locs, sds.square())  # diagonal covariances
    x = torch.randn(50, 2, dtype=torch.float64) * 2
    comp = -0.5 * (((x[:, None, :] - locs) / sds) ** 2).sum(-1) - sds.log().sum(-1) - math.log(2 * math.pi)
    by_hand = torch.logsumexp(comp + weights.log(), dim=1).mean()
    ev = evaluate(mixture, x)
    assert ev.kind == "exact" and ev.elbo is None
    assert ev.log_likelihood == pytest.approx(float(by_hand), abs=1e-10)


def test_importance_sampling_matches_closed_form_marginal():
    vae, W, b, s = linear_gaussian_vae(seed=3)
    x = torch.randn(32, 4) * 1.5
    ev = evaluate(vae, x, k=2000)
    exact = float(exact_log_marginal(x, W, b, s).mean())
    assert ev.kind == "importance" and ev.k == 2000
    assert ev.log_likelihood == pytest.approx(exact, abs=0.02)
    assert ev.elbo < ev.log_likelihood


def test_split_uses_test_rows_and_mode_metrics_from_info():
    split = ring_of_gaussians(num_samples=100, num_test=60, seed=0)

    class RingSampler:  # sample(n) only: draws exactly on the ring's modes
        def sample(self, n):
            return ring_means(8, 1.0)[torch.arange(n) % 8]

    ev = evaluate(RingSampler(), split, num_samples=80)
    assert ev.kind == "samples" and ev.num_points == 60
    assert ev.metrics["modes_captured"] == 8 and ev.metrics["high_quality_share"] == 1.0
    assert ev.metrics["kl_to_uniform"] == pytest.approx(0.0, abs=1e-12)
    assert ev["modes_captured"] == 8 and ev["kind"] == "samples"


@pytest.mark.parametrize(
    "data, match",
    [
        (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), "NaN"),
        (torch.zeros(0, 2), "empty"),
        (torch.zeros(5, 3), r"shape \(N, 2\)"),
        (torch.zeros(5), "rank"),
    ],
)
def test_bad_data_is_one_clear_value_error(data, match):
    with pytest.raises(ValueError, match=match):
        evaluate(_tiny_flow(), data)


def test_bad_arguments():
    vae, *_ = linear_gaussian_vae()
    with pytest.raises(ValueError, match="NaN"):
        evaluate(vae, torch.full((3, 4), float("nan")))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        evaluate(vae, torch.randn(3, 4), k=0)
    with pytest.raises(ValueError, match="cannot evaluate"):
        evaluate(object(), torch.randn(3, 4))


def test_float64_numpy_and_tensors_are_scored_like_float32():
    vae, *_ = linear_gaussian_vae()
    x = torch.randn(30, 4)
    base = evaluate(vae, x, k=20)
    for data in (x.double(), x.double().numpy(), x.numpy()):
        ev = evaluate(vae, data, k=20)
        assert ev.log_likelihood == base.log_likelihood and ev.elbo == base.elbo
    flow = _tiny_flow()
    assert evaluate(flow, x[:, :2].double().numpy()).log_likelihood == pytest.approx(
        evaluate(flow, x[:, :2]).log_likelihood, rel=1e-6
    )


def test_seeded_blocks_are_reproducible_and_leave_the_global_stream_alone():
    vae, *_ = linear_gaussian_vae()
    x = torch.randn(30, 4)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    a = evaluate(vae, x, k=20, seed=3, batch_size=7, chunk_size=5)
    assert torch.equal(torch.get_rng_state(), before)
    b = evaluate(vae, x, k=20, seed=3, batch_size=7, chunk_size=5)
    c = evaluate(vae, x, k=20, seed=4, batch_size=7, chunk_size=5)
    assert a.log_likelihood == b.log_likelihood != c.log_likelihood
    assert (a.metrics["block_points"], a.metrics["block_samples"], a.metrics["block_choice"]) == (
        7,
        5,
        "given",
    )
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        evaluate(vae, x, k=2, seed=-1)
