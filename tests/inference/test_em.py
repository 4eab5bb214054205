"""Closed-form EM: monotone log-likelihood, parameter recovery, agreement with scikit-learn, bad input."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris
from sklearn.mixture import GaussianMixture

from pyro_gen.data import sample_gaussian_mixture
from pyro_gen.inference.em import GaussianMixtureEM, initial_parameters

MEANS = torch.tensor([[0.0, 0.0, 0.0], [5.0, 0.0, 1.0], [0.0, 5.0, -2.0]])
SCALES = torch.tensor([0.7, 1.0, 0.5])
WEIGHTS = torch.tensor([0.5, 0.3, 0.2])


@pytest.fixture(scope="module")
def mixture_data():
    x, z = sample_gaussian_mixture(3000, MEANS, SCALES, WEIGHTS, seed=1)
    return x.double(), z


def _match(est_means, true_means):
    """Index of the estimated component nearest to each true one."""
    return torch.cdist(true_means.double(), est_means.double()).argmin(1)


@pytest.mark.parametrize("cov_type", ["full", "diag", "spherical"])
def test_log_likelihood_never_decreases(mixture_data, cov_type):
    x, _ = mixture_data
    # random seeds start far from the optimum, so there are many iterations to check
    em = GaussianMixtureEM(3, covariance_type=cov_type, init="random", tol=1e-10, max_iter=300, seed=3).fit(x)
    hist = np.array(em.log_likelihood_history_)
    assert len(hist) == em.n_iter_ + 1 and len(hist) > 5
    assert np.diff(hist).min() >= -1e-10
    assert hist[-1] == pytest.approx(em.score(x), abs=1e-10)
    assert em.result_.history[-1]["log_likelihood"] == hist[-1]
    assert em.result_.estimator == "em" and em.result_.steps == em.n_iter_


def test_recovers_known_mixture(mixture_data):
    x, z = mixture_data
    em = GaussianMixtureEM(3, covariance_type="full", seed=0, n_init=2).fit(x)
    idx = _match(em.means_, MEANS)
    assert sorted(idx.tolist()) == [0, 1, 2]
    assert torch.allclose(em.means_[idx], MEANS.double(), atol=0.08)
    assert torch.allclose(em.weights_[idx], WEIGHTS.double(), atol=0.03)
    true_cov = SCALES.double()[:, None, None] ** 2 * torch.eye(3, dtype=torch.float64)
    assert torch.allclose(em.covariances_[idx], true_cov, atol=0.15)  # ~3 standard errors
    # hard labels agree with the generating components (up to relabelling) for >99% of points
    pred = em.predict(x)
    relabel = torch.empty(3, dtype=torch.long)
    relabel[idx] = torch.arange(3)
    assert (relabel[pred] == z).double().mean() > 0.99
    proba = em.predict_proba(x)
    assert torch.allclose(proba.sum(1), torch.ones(len(x), dtype=torch.float64))


@pytest.mark.parametrize("cov_type", ["full", "diag", "spherical"])
def test_matches_sklearn_same_initialization(cov_type):
    # overlapping clusters so EM takes a while and the optimum is not trivial
    x, _ = sample_gaussian_mixture(1500, MEANS * 0.4, SCALES, WEIGHTS, seed=2)
    x = x.double().numpy()
    w0, m0, c0 = initial_parameters(x, 3, cov_type, seed=5)
    if cov_type == "full":
        p0 = torch.linalg.inv(c0).numpy()
    elif cov_type == "diag":
        p0 = 1.0 / c0.diagonal(dim1=-2, dim2=-1).numpy()
    else:
        p0 = 1.0 / c0[:, 0, 0].numpy()
    kw = dict(weights_init=w0.numpy(), means_init=m0.numpy(), precisions_init=p0, tol=1e-3, max_iter=500)
    ours = GaussianMixtureEM(3, covariance_type=cov_type, **kw).fit(x)
    ref = GaussianMixture(3, covariance_type=cov_type, **kw).fit(x)
    assert ours.n_iter_ == ref.n_iter_
    assert abs(ours.score(x) - ref.score(x)) < 1e-4
    assert abs(ours.lower_bound_ - ref.lower_bound_) < 1e-4
    np.testing.assert_allclose(ours.score_samples(x).numpy(), ref.score_samples(x), atol=1e-6)
    np.testing.assert_allclose(ours.means_.numpy(), ref.means_, atol=1e-6)
    assert ours.bic(x) == pytest.approx(ref.bic(x), abs=1e-3)
    assert ours.aic(x) == pytest.approx(ref.aic(x), abs=1e-3)


def test_score_samples_is_mixture_density():
    """score_samples equals log sum_k w_k N(x | mu_k, Sigma_k) computed by torch.distributions."""
    x, _ = sample_gaussian_mixture(400, MEANS, SCALES, seed=4)
    em = GaussianMixtureEM(3, covariance_type="full", seed=0, max_iter=5).fit(x)
    comp = torch.distributions.MultivariateNormal(em.means_, covariance_matrix=em.covariances_)
    expect = torch.logsumexp(comp.log_prob(x.double()[:, None, :]) + em.weights_.log(), 1)
    assert torch.allclose(em.score_samples(x), expect, atol=1e-9)


def test_sample_follows_fitted_mixture():
    x, _ = sample_gaussian_mixture(2000, MEANS, SCALES, WEIGHTS, seed=6)
    em = GaussianMixtureEM(3, covariance_type="diag", seed=0).fit(x)
    xs, labels = em.sample(20000, seed=1)
    assert xs.shape == (20000, 3) and labels.shape == (20000,)
    freq = torch.bincount(labels, minlength=3).double() / 20000
    assert torch.allclose(freq, em.weights_, atol=0.015)
    for k in range(3):
        assert torch.allclose(xs[labels == k].mean(0), em.means_[k], atol=0.05)


def test_bic_picks_true_number_of_components(mixture_data):
    x, _ = mixture_data
    bics = [GaussianMixtureEM(k, seed=0, n_init=2).fit(x).bic(x) for k in (1, 2, 3, 4, 5)]
    assert int(np.argmin(bics)) + 1 == 3
    em = GaussianMixtureEM(2, covariance_type="full", seed=0).fit(x)
    n_par = 2 * (3 + 6) + 1
    assert em.n_parameters() == n_par
    assert em.bic(x) == pytest.approx(-2 * em.score(x) * len(x) + n_par * math.log(len(x)))


def test_n_init_keeps_best_restart(mixture_data):
    x, _ = mixture_data
    singles = [GaussianMixtureEM(3, init="random", seed=s, max_iter=20).fit(x).score(x) for s in range(3)]
    best = GaussianMixtureEM(3, init="random", seed=0, n_init=3, max_iter=20).fit(x)
    assert best.score(x) >= singles[0] - 1e-12


def test_float32_close_to_float64(mixture_data):
    x, _ = mixture_data
    a = GaussianMixtureEM(3, seed=0).fit(x)
    b = GaussianMixtureEM(3, seed=0, dtype=torch.float32).fit(x.float())
    assert abs(a.score(x) - b.score(x.float())) < 1e-3


def test_bad_input_clear_errors():
    x, _ = sample_gaussian_mixture(10, MEANS, SCALES, seed=0)
    with pytest.raises(ValueError, match="larger than the number of data points"):
        GaussianMixtureEM(11).fit(x)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        GaussianMixtureEM(2).fit(bad)
    with pytest.raises(ValueError, match="covariance_type"):
        GaussianMixtureEM(2, covariance_type="tied").fit(x)
    with pytest.raises(ValueError, match="init must be one of.*'k-means'"):
        GaussianMixtureEM(2, init="k-means").fit(x)
    with pytest.raises(ValueError, match="reg_covar"):
        GaussianMixtureEM(2, reg_covar=-1.0).fit(x)
    with pytest.raises(ValueError, match="not fitted"):
        GaussianMixtureEM(2).predict(x)
    em = GaussianMixtureEM(2).fit(x)
    with pytest.raises(ValueError, match="features"):
        em.score(x[:, :2])


def test_singular_covariance_needs_reg_covar():
    # the third feature copies the first: every covariance is singular
    x, _ = sample_gaussian_mixture(200, MEANS[:, :2], SCALES, seed=0)
    x = torch.cat([x, x[:, :1]], 1)
    with pytest.raises(ValueError, match="singular.*reg_covar"):
        GaussianMixtureEM(2, reg_covar=0.0).fit(x)
    em = GaussianMixtureEM(2, reg_covar=1e-4).fit(x)  # regularized: fine
    assert math.isfinite(em.score(x))
    # one component per point collapses onto it (zero variance) in the diagonal model too
    with pytest.raises(ValueError, match="zero variance.*reg_covar"):
        GaussianMixtureEM(5, covariance_type="diag", reg_covar=0.0).fit(x[:5])


def test_result_follows_the_fit_result_contract(mixture_data):
    x, _ = mixture_data
    em = GaussianMixtureEM(3, covariance_type="diag", init="random", n_init=3, tol=1e-6, seed=0).fit(x[:600])
    res = em.result_
    rows = res.history
    assert res.kind == "em" and res.estimator == "em"
    # steps count the iterations of every restart; each restart adds n_iter + 1 rows
    assert [r["restart"] for r in rows].count(2) >= 2 and len({r["restart"] for r in rows}) == 3
    assert res.steps == rows[-1]["step"] == len(rows) - 3 and res.epochs == float(res.steps)
    assert all(b["step"] - a["step"] in (0, 1) for a, b in zip(rows, rows[1:]))
    for key in ("seconds", "cpu_seconds"):
        values = [r[key] for r in rows]
        assert values == sorted(values) and values[-1] <= getattr(res, key) + 1e-12
    assert all(r["eval_seconds"] == 0.0 and r["epoch"] == r["step"] for r in rows)
    assert res.step_ms["n"] == res.steps and res.step_ms["p10"] <= res.step_ms["median"] <= res.step_ms["p90"]
    best = [r["log_likelihood"] for r in rows if r["restart"] == res.params["restart"]]
    assert best == em.log_likelihood_history_


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label vectors give the same partition (equal up to a permutation of labels)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_start_reaches_sklearn_on_iris(seed):
    """From its default start (one seeded KMeans run) EM ends where scikit-learn's default ends."""
    x = load_iris().data
    ours = GaussianMixtureEM(3, seed=seed).fit(x)
    ref = GaussianMixture(3, random_state=seed).fit(x)  # init_params="kmeans", tol 1e-3, reg 1e-6
    assert ours.init == "kmeans" and ours.start_ == "kmeans"
    assert ours.result_.params["init"] == "kmeans"
    assert ours.score(x) >= ref.score(x) - 1e-6
    assert _same_partition(ours.predict(x).numpy(), ref.predict(x))
    assert ours.n_iter_ == ref.n_iter_


def test_default_start_is_kmeans_labels_then_one_m_step():
    """initial_parameters' default start is the M-step of one KMeans(n_init=1, random_state=seed) run."""
    from sklearn.cluster import KMeans

    x = load_iris().data
    w0, m0, _ = initial_parameters(x, 3, seed=4)
    labels = KMeans(3, n_init=1, random_state=np.random.RandomState(4)).fit(x).labels_
    means = np.stack([x[labels == j].mean(0) for j in range(3)])
    np.testing.assert_allclose(m0.numpy(), means, atol=1e-12)
    np.testing.assert_allclose(w0.numpy(), np.bincount(labels, minlength=3) / len(x), atol=1e-12)


def test_init_reaches_the_start():
    """Each init gives its own start; the nearest-seed starts differ from the k-means one."""
    x = load_iris().data
    inits = ("kmeans", "kmeans++", "random")
    starts = {init: initial_parameters(x, 3, init=init, seed=1)[1] for init in inits}
    assert not torch.allclose(starts["kmeans"], starts["random"])
    fits = {init: GaussianMixtureEM(3, init=init, seed=1, max_iter=1).fit(x) for init in starts}
    for init, em in fits.items():
        assert em.start_ == init
    # one iteration from each start: the first logged log-likelihood is that of the start
    first = {init: em.log_likelihood_history_[0] for init, em in fits.items()}
    assert len({round(v, 9) for v in first.values()}) == 3
