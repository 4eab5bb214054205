"""The Pyro Gaussian mixture: enumerated and closed-form marginals agree, MAP finds EM's optimum,
assignments, the CLI family (fit, sample) and the component matching of the comparison."""

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from pyro_gen.cli import main
from pyro_gen.data import sample_gaussian_mixture
from pyro_gen.inference.em import GaussianMixtureEM, initial_parameters
from pyro_gen.inference.mcmc import match_components
from pyro_gen.inference.svi import fit
from pyro_gen.models.gmm import GaussianMixtureModel, MixtureParameters

MEANS = torch.tensor([[0.0, 0.0], [5.0, 0.5], [1.0, 5.0]])
SCALES = torch.tensor([0.6, 0.8, 0.5])


@pytest.fixture(scope="module")
def data():
    x, z = sample_gaussian_mixture(240, MEANS, SCALES, seed=0)
    return x, z


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_enumerated_marginal_equals_closed_form(data, cov_type):
    """log p(x, theta): z summed by TraceEnum_ELBO == MixtureSameFamily form == prior + mixture log-lik."""
    x, _ = data
    em = GaussianMixtureEM(3, covariance_type=cov_type, seed=0).fit(x)
    enum = GaussianMixtureModel.from_data(x, 3, cov_type)
    closed = GaussianMixtureModel.from_data(x, 3, cov_type, marginalized=True)
    values = enum.init_values(em.weights_, em.means_, em.covariance_matrices())
    lj_enum, lj_closed = enum.log_joint(x, values), closed.log_joint(x, values)
    assert lj_enum == pytest.approx(lj_closed, rel=1e-5)
    # the likelihood part equals the mixture log-density summed over points
    prior = poutine_prior_log_prob(enum, x, values)
    loglik = float(enum.parameters_from(values).log_prob(x).sum())
    assert lj_closed - prior == pytest.approx(loglik, rel=1e-5)


def poutine_prior_log_prob(gmm, x, values):
    tr = pyro.poutine.trace(pyro.poutine.condition(gmm.model, data=values)).get_trace(x)
    return sum(float(tr.nodes[s]["fn"].log_prob(tr.nodes[s]["value"]).sum()) for s in values)


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_init_values_round_trip(data, cov_type):
    x, _ = data
    w, m, c = initial_parameters(x, 3, cov_type, seed=0)
    gmm = GaussianMixtureModel.from_data(x, 3, cov_type)
    p = gmm.parameters_from(gmm.init_values(w, m, c))
    assert torch.allclose(p.weights, w, atol=1e-6)
    assert torch.allclose(p.locs, m, atol=1e-5)
    assert torch.allclose(p.covariances, c, atol=1e-5)


def test_svi_map_reaches_em_optimum_and_assignments(data):
    """MAP with weak priors on a well-separated mixture lands on EM's maximum-likelihood optimum."""
    x, z = data
    w0, m0, c0 = initial_parameters(x, 3, "diag", seed=0)
    em = GaussianMixtureEM(
        3,
        covariance_type="diag",
        tol=1e-8,
        max_iter=500,
        weights_init=w0.numpy(),
        means_init=m0.numpy(),
        precisions_init=1 / c0.diagonal(dim1=1, dim2=2).numpy(),
    ).fit(x)
    gmm = GaussianMixtureModel.from_data(x, 3, "diag")
    guide = gmm.map_guide(gmm.init_values(w0, m0, c0))
    res = fit(
        gmm.model,
        x,
        guide=guide,
        estimator=TraceEnum_ELBO(max_plate_nesting=1),
        lr=0.05,
        batch_size=len(x),
        steps=300,
        progress=False,
    )
    assert res.final_train_elbo is not None
    p = gmm.parameters_from(guide.median(x))
    p = p.permute(match_components(p, MixtureParameters(em.weights_, em.means_, em.covariances_)))
    assert torch.allclose(p.locs, em.means_, atol=0.03)
    assert torch.allclose(p.weights, em.weights_, atol=0.01)
    assert torch.allclose(p.covariances.diagonal(dim1=1, dim2=2), em.covariances_, rtol=0.1)
    assert float(p.log_prob(x).mean()) == pytest.approx(em.score(x), abs=5e-3)
    # infer_discrete (MAP assignments) == argmax of the closed-form responsibilities
    labels = gmm.assignments(x, guide)
    unpermuted = gmm.parameters_from(guide.median(x))
    assert torch.equal(labels, unpermuted.predict_proba(x).argmax(1))
    # and those recover the generating components up to relabelling
    table = torch.zeros(3, 3)
    table.index_put_((labels, z), torch.ones(len(z)), accumulate=True)
    assert float(table.max(0).values.sum()) / len(z) > 0.98


def test_variational_guide_has_posterior_spread(data):
    x, _ = data
    w0, m0, c0 = initial_parameters(x, 3, "diag", seed=0)
    gmm = GaussianMixtureModel.from_data(x, 3, "diag")
    guide = gmm.variational_guide(gmm.init_values(w0, m0, c0))
    fit(
        gmm.model,
        x,
        guide=guide,
        estimator=TraceEnum_ELBO(max_plate_nesting=1),
        lr=0.05,
        batch_size=len(x),
        steps=150,
        progress=False,
    )
    draws = torch.stack([guide(x)["locs"] for _ in range(200)])
    sd = draws.std(0)
    # posterior std of a component mean is about sigma / sqrt(n_k) (~0.06 here), certainly in (0.005, 0.5)
    assert bool((sd > 0.005).all()) and bool((sd < 0.5).all())


def test_model_bad_arguments(data):
    x, _ = data
    with pytest.raises(ValueError, match="larger than the number of data points"):
        GaussianMixtureModel.from_data(x[:2], 3)
    with pytest.raises(ValueError, match="covariance_type"):
        GaussianMixtureModel(3, 2, "spherical")
    with pytest.raises(ValueError, match="num_components"):
        GaussianMixtureModel(0, 2)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        GaussianMixtureModel(3, 2).check_data(torch.zeros(5, 3))


def test_match_components_undoes_permutation():
    g = torch.Generator().manual_seed(0)
    ref = MixtureParameters(
        torch.ones(5) / 5, torch.randn(5, 3, generator=g) * 3, torch.eye(3).expand(5, 3, 3)
    )
    perm = torch.tensor([3, 0, 4, 1, 2])
    shuffled = ref.permute(perm)
    noisy = MixtureParameters(
        shuffled.weights, shuffled.locs + 0.05 * torch.randn(5, 3, generator=g), shuffled.covariances
    )
    back = noisy.permute(match_components(noisy, ref))
    assert torch.allclose(back.locs, ref.locs, atol=0.2)
    assert torch.equal(ref.permute(perm).permute(match_components(shuffled, ref)).locs, ref.locs)


def test_cli_fit_em_and_sample(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "fit",
                "gmm",
                "--data",
                "ring",
                "--method",
                "em",
                "--components",
                "8",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    metrics = __import__("json").loads((out / "metrics.json").read_text())
    # ring: 8 equal modes of std 0.01 on the unit circle. A 2-D Gaussian's average log-density
    # at its own samples is -log(2 pi std^2) - 1 nats; the weight 1/8 subtracts log 8.
    assert metrics["test_log_likelihood"] == pytest.approx(
        -np.log(2 * np.pi * 0.01**2) - 1 - np.log(8), abs=0.05
    )
    assert "bic" in metrics and (out / "mixture.pt").is_file()
    npy = tmp_path / "s.npy"
    assert main(["sample", str(out), "--num", "50", "--out", str(npy)]) == 0
    s = np.load(npy)
    assert s.shape == (50, 2)
    assert np.abs(np.linalg.norm(s, axis=1) - 1).max() < 0.06


def test_cli_bad_method_args(tmp_path, capsys):
    rc = main(
        [
            "fit",
            "gmm",
            "--data",
            "ring",
            "--method",
            "svi",
            "--covariance-type",
            "spherical",
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
        ]
    )
    assert rc == 2
    assert "spherical" in capsys.readouterr().err


def test_cli_compare_gmm_em_and_map(tmp_path):
    """`pyro-gen compare gmm` on the synthetic 3-component mixture: BIC picks K=3, MAP ~ EM."""
    out = tmp_path / "cmp"
    args = [
        "compare",
        "gmm",
        "--methods",
        "em,svi-map",
        "--svi-steps",
        "200",
        "--k-range",
        "1-4",
        "--loo-k-range",
        "",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    report = __import__("json").loads((out / "comparison.json").read_text())
    assert report["model_selection"]["best_k_bic"] == 3
    em, svi = report["methods"]["em"], report["methods"]["svi-map"]
    assert em["max_loc_diff_vs_em"] == 0.0
    assert svi["max_loc_diff_vs_em"] < 0.05
    assert svi["train_log_likelihood"] == pytest.approx(em["train_log_likelihood"], abs=0.01)
    assert em["test_log_likelihood"] < em["train_log_likelihood"] + 0.5
    for name in ("mixtures.png", "traces.png", "model_selection.png"):
        assert (out / name).stat().st_size > 1000


def test_gmm_family_fits_and_scores_the_same_pixels(tmp_path):
    from pyro_gen.runs import plan_run, run_plan

    plan = plan_run("gmm", run={"data": "digits", "out": str(tmp_path)}, model={"components": 2})
    assert plan.run.binarize == "none"
    metrics = run_plan(plan, progress=False)
    # grey levels for both splits: train and test log-likelihoods are of the same order
    assert abs(metrics["train_log_likelihood"] - metrics["test_log_likelihood"]) < 20


def test_cli_init_reaches_em_and_metrics(tmp_path, monkeypatch):
    """`--init` of the gmm family reaches GaussianMixtureEM and is recorded in metrics.json."""
    import json

    import pyro_gen.inference.em as em_module

    seen = []
    original = em_module.GaussianMixtureEM._initial_resp

    def spy(self, *args, **kwargs):
        seen.append(self.init)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(em_module.GaussianMixtureEM, "_initial_resp", spy)
    for init in ("random", "kmeans"):
        out = tmp_path / init
        argv = ["fit", "gmm", "--data", "ring", "--method", "em", "--components", "8"]
        argv += ["--out", str(out), "--no-progress"] + (["--init", init] if init != "kmeans" else [])
        assert main(argv) == 0
        assert seen[-1] == init  # the default (no flag) is k-means
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["init"] == init
        assert json.loads((out / "config.json").read_text())["model"]["init"] == init


def test_em_run_figure_is_labelled_log_likelihood_per_iteration(tmp_path, monkeypatch):
    """The EM run's training curve: log-likelihood (nats per data point) per EM iteration, not ELBO."""
    import pyro_gen.report.figures as figures
    from pyro_gen.report import report

    captured = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, **kw: captured.append((fig, path)) or path)
    x, _ = sample_gaussian_mixture(300, MEANS, SCALES, seed=3)
    em = GaussianMixtureEM(3, seed=0).fit(x)
    report(em.result_, tmp_path)
    ((fig, path),) = [(f, p) for f, p in captured if str(p).endswith("log_likelihood.png")]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "EM iteration"
    assert "log-likelihood" in ax.get_ylabel() and "nats per data point" in ax.get_ylabel()
    assert "ELBO" not in ax.get_ylabel() + ax.get_title() and "epoch" not in ax.get_xlabel()


def test_comparison_traces_label_em_and_svi_apart():
    """traces.png: EM's panel is log-likelihood per EM iteration, SVI's is ELBO per step."""
    from pyro_gen.report.gmm import objective_labels, traces_figure

    em_rows = [{"step": i, "log_likelihood": -3.0 + 0.1 * i, "train_elbo": -3.0 + 0.1 * i} for i in range(4)]
    svi_rows = [{"step": i, "epoch": float(i), "train_elbo": -4.0 + 0.1 * i} for i in range(5)]
    fig = traces_figure({"em": em_rows, "svi-map": svi_rows})
    em_ax, svi_ax = fig.axes
    assert em_ax.get_xlabel() == "EM iteration"
    assert em_ax.get_ylabel() == "training log-likelihood (nats per data point)"
    assert [line.get_label() for line in em_ax.get_lines()] == ["em"]
    assert svi_ax.get_xlabel() == "SVI step" and "ELBO" in svi_ax.get_ylabel()
    assert [line.get_label() for line in svi_ax.get_lines()] == ["svi-map"]
    assert list(em_ax.get_lines()[0].get_ydata()) == [r["log_likelihood"] for r in em_rows]
    assert objective_labels("em")["key"] == "log_likelihood"
    with pytest.raises(ValueError, match="'nuts'"):
        objective_labels("nuts")


def test_family_inits_are_the_em_inits():
    from pyro_gen.families.gmm import INITS
    from pyro_gen.inference.em import INITS as EM_INITS

    assert INITS == EM_INITS
