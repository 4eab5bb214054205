"""Mode-coverage metrics and the Frechet distance: exact mixtures, collapsed samplers, bad input."""

import math
from types import SimpleNamespace

import pytest
import torch

from pyro_gen.data import load_digits, sample_gaussian_mixture
from pyro_gen.data.synthetic import grid_means, ring_means
from pyro_gen.evaluation.samples import (
    feature_classifier_for,
    frechet_distance,
    frechet_distance_gaussians,
    grid_mode_metrics,
    mode_metrics,
    mode_metrics_for_data,
    ring_mode_metrics,
)


def test_exact_ring_samples_capture_all_modes_with_high_quality():
    x, _ = sample_gaussian_mixture(2500, ring_means(8), 0.01, seed=1)
    m = ring_mode_metrics(x)
    assert m["modes_captured"] == 8 and m["num_modes"] == 8
    # within 3 std in 2-D: P(chi_2 <= 9) = 1 - exp(-4.5) = 0.9889
    assert m["high_quality_share"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)
    # KL of a multinomial histogram with 2,500 draws to uniform: about (K-1)/(2N) = 0.0014
    assert 0 <= m["kl_to_uniform"] < 0.01
    assert sum(m["mode_counts"]) == round(m["high_quality_share"] * 2500)


def test_exact_grid_samples_capture_all_25_modes():
    x, _ = sample_gaussian_mixture(2500, grid_means(5, 2.0), 0.05, seed=2)
    m = grid_mode_metrics(x)
    assert m["modes_captured"] == 25
    assert m["high_quality_share"] > 0.975
    assert m["kl_to_uniform"] < 0.02


def test_single_component_sampler_captures_one_mode_with_kl_log_k():
    means = ring_means(8)
    x, _ = sample_gaussian_mixture(2500, means[3:4], 0.01, seed=3)
    m = ring_mode_metrics(x)
    assert m["modes_captured"] == 1
    assert m["mode_counts"][3] == sum(m["mode_counts"])
    assert m["kl_to_uniform"] == pytest.approx(math.log(8), abs=1e-9)


def test_samples_between_modes_are_low_quality_and_capture_nothing():
    x = torch.zeros(100, 2)  # the ring's centre is 1 away from every mode
    m = ring_mode_metrics(x)
    assert m["modes_captured"] == 0 and m["high_quality_share"] == 0.0
    assert math.isnan(m["kl_to_uniform"])


def test_two_equal_modes_give_kl_log4():
    means = ring_means(8)
    x = torch.cat([means[0].expand(50, 2), means[1].expand(50, 2)])
    assert mode_metrics(x, means, 0.01)["kl_to_uniform"] == pytest.approx(math.log(4))


def test_reverse_kl_of_pacgan_table1_counts_only_high_quality_samples():
    # PacGAN's reverse KL, KL(p_gen || uniform) over the modes, of the high-quality samples'
    # histogram: shares (1/2, 1/4, 1/4, 0) over 4 modes give sum p ln(4 p) = 0.5 ln 2
    means = grid_means(2, 2.0)
    x = torch.cat([means[0].expand(40, 2), means[1].expand(20, 2), means[2].expand(20, 2)])
    far = torch.full((30, 2), 10.0)  # nearest to a mode, but far outside 3 std: left out
    m = mode_metrics(torch.cat([x, far]), means, 0.05)
    assert m["mode_counts"] == [40, 20, 20, 0] and m["modes_captured"] == 3
    assert m["high_quality_share"] == pytest.approx(80 / 110)
    assert m["kl_to_uniform"] == pytest.approx(0.5 * math.log(2), abs=1e-12)


def test_mode_metrics_reads_modes_from_the_data_split():
    from pyro_gen.data import ring_of_gaussians

    data = ring_of_gaussians(num_samples=100, num_modes=5, radius=2.0, std=0.02, num_test=2500)
    m = mode_metrics_for_data(data, data.test)
    assert m["num_modes"] == 5 and m["modes_captured"] == 5


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(10, 3), "3 dimensions"),
        (torch.zeros(0, 2), "empty"),
        (torch.full((4, 2), float("nan")), "NaN"),
        (torch.zeros(10), "rank"),
    ],
)
def test_mode_metrics_rejects_bad_samples(bad, match):
    with pytest.raises(ValueError, match=match):
        ring_mode_metrics(bad)


def test_mode_metrics_rejects_bad_std_and_non_mixture_data():
    with pytest.raises(ValueError, match="std"):
        mode_metrics(torch.zeros(3, 2), ring_means(8), 0.0)
    with pytest.raises(ValueError, match="not a Gaussian mixture"):
        mode_metrics_for_data(SimpleNamespace(name="digits", info={}), torch.zeros(3, 64))


def test_frechet_gaussians_closed_form():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance_gaussians([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9 + 1)
    # commuting diagonal covariances: sum of (sqrt a - sqrt b)^2
    d = frechet_distance_gaussians([0, 0], [[1, 0], [0, 9]], [0, 0], [[4, 0], [0, 1]])
    assert d == pytest.approx((1 - 2) ** 2 + (3 - 1) ** 2)


def test_frechet_distance_raw_coordinates_matches_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 3, generator=g)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    shifted = x + torch.tensor([1.0, 0.0, 2.0])
    assert frechet_distance(shifted, x) == pytest.approx(5.0, rel=1e-6)


@pytest.fixture(scope="module")
def digits_and_classifier():
    data = load_digits()
    return data, feature_classifier_for(data)


def test_feature_classifier_learns_digits(digits_and_classifier):
    _, clf = digits_and_classifier
    assert clf.accuracy_ > 0.9


def test_frechet_distance_near_zero_between_halves_and_grows_with_noise(digits_and_classifier):
    data, clf = digits_and_classifier
    x = data.train
    a, b = x[: len(x) // 2], x[len(x) // 2 :]
    assert frechet_distance(a, a, clf.features) == pytest.approx(0.0, abs=1e-6)
    halves = frechet_distance(a, b, clf.features)
    g = torch.Generator().manual_seed(0)
    noisy = [
        frechet_distance(a, (b + s * torch.randn(b.shape, generator=g)).clamp(0, 1), clf.features)
        for s in (0.1, 0.3, 0.6)
    ]
    assert noisy[0] < noisy[1] < noisy[2]
    # two halves of one set differ by sampling noise alone: a fraction of what pixel noise adds
    # (the ratio is 0.19-0.23 across classifier seeds)
    assert halves < 0.3 * noisy[1]


def test_frechet_distance_rejects_bad_input(digits_and_classifier):
    _, clf = digits_and_classifier
    with pytest.raises(ValueError, match="dimensions"):
        frechet_distance(torch.zeros(5, 64), torch.zeros(5, 10))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(torch.zeros(1, 64), torch.zeros(5, 64))
    with pytest.raises(ValueError, match=r"\(N, 64\)"):
        clf.features(torch.zeros(5, 784))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(torch.full((5, 64), float("nan")), torch.zeros(5, 64))


# ------------------------------------------------------------------ within-mode spread and MMD
@pytest.mark.parametrize(("means", "std"), [(ring_means(8), 0.01), (grid_means(5, 2.0), 0.05)])
def test_spread_is_one_for_data_and_half_for_half_the_std(means, std):
    from pyro_gen.evaluation.samples import truncated_spread, within_mode_spread

    data, _ = sample_gaussian_mixture(2500, means, std, seed=11)
    half, _ = sample_gaussian_mixture(2500, means, 0.5 * std, seed=12)
    m_data, m_half = mode_metrics(data, means, std), mode_metrics(half, means, std)
    # draws from the data: the 3-sigma cut trims the tails, so the expected ratio is 0.974 in 2-D
    assert m_data["within_mode_spread_data"] == pytest.approx(truncated_spread(2), abs=1e-12)
    assert m_data["within_mode_spread"] == pytest.approx(truncated_spread(2), abs=0.04)
    assert 0.8 < m_data["within_mode_spread_min"] <= m_data["within_mode_spread_max"] < 1.2
    assert m_data["within_mode_spread_modes"] == len(means)
    # half the std: half as wide (the cut at 3 data sigmas keeps all of it)
    assert m_half["within_mode_spread"] == pytest.approx(0.5, abs=0.03)
    assert m_half["within_mode_spread_max"] < 0.6
    assert within_mode_spread(half, means, std)["within_mode_spread"] == m_half["within_mode_spread"]


def test_truncated_spread_closed_form():
    from pyro_gen.evaluation.samples import truncated_spread

    # D=2: r^2 ~ Exp(mean 2); E[r^2 | r^2 <= 9] = 2 - 9 e^-4.5 / (1 - e^-4.5), per coordinate / 2
    e = math.exp(-4.5)
    assert truncated_spread(2, 3.0) == pytest.approx(math.sqrt((2 - 9 * e / (1 - e)) / 2), rel=1e-12)
    assert truncated_spread(2, 50.0) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="0"):
        truncated_spread(0)


def test_spread_ignores_modes_with_fewer_than_two_samples():
    from pyro_gen.evaluation.samples import within_mode_spread

    means = ring_means(8)
    x = torch.cat([means[0] + 0.01 * torch.randn(200, 2, generator=torch.Generator().manual_seed(0)),
                   means[1:2]])  # fmt: skip
    m = within_mode_spread(x, means, 0.01)
    assert m["within_mode_spread_modes"] == 1
    assert m["within_mode_spread_per_mode"][1] is None and m["within_mode_spread_per_mode"][0] is not None
    assert math.isnan(within_mode_spread(torch.zeros(10, 2), means, 0.01)["within_mode_spread"])


def _mixture_split(means, std):
    train, _ = sample_gaussian_mixture(5000, means, std, seed=21)
    test, _ = sample_gaussian_mixture(2500, means, std, seed=22)
    return SimpleNamespace(name="mix", train=train, test=test, info={"means": means.tolist(), "std": std})


@pytest.mark.parametrize(("means", "std"), [(ring_means(8), 0.01), (grid_means(5, 2.0), 0.05)])
def test_mmd_near_floor_for_data_and_far_above_for_collapsed_samplers(means, std):
    from pyro_gen.evaluation.samples import mixture_sample_metrics, mmd_squared

    data = _mixture_split(means, std)
    fresh, _ = sample_gaussian_mixture(2500, means, std, seed=23)
    half, _ = sample_gaussian_mixture(2500, means, 0.5 * std, seed=24)
    dot = means.repeat(100, 1)  # every mode's samples in one point at its centre
    m = mixture_sample_metrics(data, fresh)
    assert m["mmd_bandwidth"] == std and m["mmd2_reference_rows"] == 2500
    # unbiased: data against data is 0 up to noise of a few 1e-4 at these sizes
    assert abs(m["mmd2_floor"]) < 1e-3 and abs(m["mmd2"]) < 1e-3
    scale = 1.0 / len(means)  # within-mode kernel mass scales with 1/K
    assert mixture_sample_metrics(data, half)["mmd2"] > 10 * scale * 1e-3 + abs(m["mmd2_floor"])
    assert mmd_squared(dot, data.test, std) > 0.1 * scale
    # the mode metrics alone cannot tell the half-width sampler from the data
    assert mixture_sample_metrics(data, half)["modes_captured"] == len(means)


def test_mmd_closed_form_and_bad_input():
    from pyro_gen.evaluation.samples import mmd_squared

    x = torch.tensor([[0.0], [0.0]])
    y = torch.tensor([[1.0], [1.0]])
    # k(x, x') = k(y, y') = 1, k(x, y) = exp(-1/2): MMD^2 = 2 - 2 exp(-1/2)
    assert mmd_squared(x, y, 1.0) == pytest.approx(2 - 2 * math.exp(-0.5), rel=1e-12)
    assert mmd_squared(x, x, 1.0) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="bandwidth.*-1"):
        mmd_squared(x, y, -1.0)
    with pytest.raises(ValueError, match="at least 2 rows.*1"):
        mmd_squared(x[:1], y, 1.0)
    with pytest.raises(ValueError, match="dimensions"):
        mmd_squared(x, torch.zeros(3, 2), 1.0)
