"""The Gaussian-mixture family: ``pyro-gen fit gmm --data ... --method em|svi|nuts``.

``em`` is closed-form EM (:class:`~pyro_gen.inference.em.GaussianMixtureEM`); ``svi`` fits the
Pyro model (:mod:`pyro_gen.models.gmm`) with ``TraceEnum_ELBO`` and a MAP (``AutoDelta``) or
variational (``AutoNormal``) guide through the common ``fit`` loop; ``nuts`` samples the
posterior with NUTS. SVI and NUTS start from EM's k-means++ starting point. The fitted
mixture is written to ``mixture.pt`` in the run folder, which ``pyro-gen sample`` reads back.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ..registry import ModelFamily

MIXTURE_FILE = "mixture.pt"


def _gmm_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="em", choices=["em", "svi", "nuts"], help="how to fit the mixture")
    p.add_argument("--components", type=int, default=8, help="number of mixture components K")
    p.add_argument(
        "--covariance-type",
        default="full",
        choices=["full", "diag", "spherical"],
        help="spherical is EM only",
    )
    p.add_argument("--n-init", type=int, default=1, help="EM restarts")
    p.add_argument("--max-iter", type=int, default=200, help="EM iterations at most")
    p.add_argument("--tol", type=float, default=1e-3, help="EM stops when the log-lik/point changes less")
    p.add_argument("--reg-covar", type=float, default=1e-6, help="added to covariance diagonals")
    p.add_argument(
        "--guide",
        default="map",
        choices=["map", "normal"],
        help="svi: AutoDelta (MAP) or AutoNormal (variational)",
    )
    p.add_argument("--num-samples", type=int, default=300, help="nuts: draws per chain")
    p.add_argument("--num-warmup", type=int, default=300, help="nuts: warm-up steps per chain")
    p.add_argument("--num-chains", type=int, default=2, help="nuts: chains (run one after another)")


class GaussianMixtureRun:
    """What the family builds and trains: options plus, once fitted, the :class:`MixtureParameters`.

    ``sample(num)`` draws (num, D) points; ``log_prob(x)`` gives (N,) nats per point.
    """

    def __init__(self, dim: int, options: dict) -> None:
        self.dim = int(dim)
        self.options = dict(options)
        self.params = None
        self.extra: dict[str, Any] = {}

    def _fitted(self):
        if self.params is None:
            raise ValueError("the mixture is not fitted yet")
        return self.params

    def sample(self, num: int) -> torch.Tensor:
        """Draw ``num`` points from the fitted mixture, a (num, D) float tensor."""
        return self._fitted().sample(num)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``log p(x_n)`` per row (nats) under the fitted (plug-in) mixture."""
        return self._fitted().log_prob(x)


def _build_gmm(data, options: dict) -> GaussianMixtureRun:
    k = int(options.get("components", 8))
    if k < 1:
        raise ValueError(f"--components must be a positive integer, got {k}")
    if options.get("covariance_type") == "spherical" and options.get("method", "em") != "em":
        raise ValueError("--covariance-type spherical is supported by --method em only")
    return GaussianMixtureRun(data.dim, options)


def _train_gmm(model: GaussianMixtureRun, data, config: dict, out: Path):
    import pyro
    from pyro.infer import TraceEnum_ELBO

    from ..inference.em import GaussianMixtureEM, initial_parameters
    from ..inference.mcmc import fit_nuts
    from ..inference.svi import fit
    from ..models.gmm import GaussianMixtureModel, MixtureParameters

    opts = model.options
    method = opts.get("method", "em")
    k = int(opts.get("components", 8))
    cov_type = opts.get("covariance_type", "full")
    seed = int(config.get("seed", 0))
    x = data.train.float()
    progress = bool(config.get("progress", True))
    if method == "em":
        em = GaussianMixtureEM(
            k,
            covariance_type=cov_type,
            tol=float(opts.get("tol", 1e-3)),
            max_iter=int(opts.get("max_iter", 200)),
            n_init=int(opts.get("n_init", 1)),
            reg_covar=float(opts.get("reg_covar", 1e-6)),
            seed=seed,
        ).fit(x)
        model.params = MixtureParameters(em.weights_, em.means_, em.covariance_matrices())
        model.extra = {"bic": em.bic(x), "aic": em.aic(x), "converged": em.converged_}
        result = em.result_
    else:
        gmm = GaussianMixtureModel.from_data(x, k, cov_type)
        w0, m0, c0 = initial_parameters(
            x, k, cov_type, reg_covar=float(opts.get("reg_covar", 1e-6)), seed=seed
        )
        init = gmm.init_values(w0, m0, c0)
        if method == "svi":
            pyro.clear_param_store()
            guide_kind = opts.get("guide", "map")
            guide = gmm.map_guide(init) if guide_kind == "map" else gmm.variational_guide(init)
            steps, epochs = config.get("steps"), config.get("epochs")
            result = fit(
                gmm.model,
                x,
                guide=guide,
                estimator=TraceEnum_ELBO(max_plate_nesting=1),
                optimizer=config.get("optimizer", "adam"),
                lr=float(config.get("lr", 1e-3)),
                batch_size=int(config.get("batch_size", 128)),
                steps=steps,
                epochs=None if steps is not None else (epochs or 10),
                test_data=data.test.float(),
                seed=seed,
                progress=progress,
            )
            result.estimator = f"svi-{guide_kind}"
            model.params = gmm.parameters_from(guide.median(x))
        else:
            result = fit_nuts(
                gmm,
                x,
                num_samples=int(opts.get("num_samples", 300)),
                warmup_steps=int(opts.get("num_warmup", 300)),
                num_chains=int(opts.get("num_chains", 2)),
                init=init,
                reference_locs=m0,
                seed=seed,
                progress=progress,
            )
            model.params = result.params["posterior_mean"]
            model.extra = {
                "max_rhat": result.params["max_rhat"],
                "divergences": result.params["divergences"],
                "nuts_result": result,
            }
    torch.save({**model.params.to_dict(), "method": method}, Path(out) / MIXTURE_FILE)
    return result


def _evaluate_gmm(model: GaussianMixtureRun, data, config: dict) -> dict:
    from ..inference.mcmc import log_predictive_density

    params = model._fitted()
    metrics = {
        "train_log_likelihood": float(params.log_prob(data.train).mean()),
        "test_log_likelihood": float(params.log_prob(data.test).mean()),
    }
    for key in ("bic", "aic", "converged", "max_rhat", "divergences"):
        if key in model.extra:
            metrics[key] = model.extra[key]
    if "nuts_result" in model.extra:
        metrics["test_log_predictive_density"] = log_predictive_density(model.extra["nuts_result"], data.test)
    return metrics


def _load_gmm(run_dir, config: dict) -> GaussianMixtureRun:
    from ..models.gmm import MixtureParameters

    path = Path(run_dir) / MIXTURE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the run folder has no fitted mixture")
    try:
        state = torch.load(path, weights_only=True)
    except Exception as e:  # torch raises several types for a damaged file
        raise ValueError(f"{path} is not a readable mixture file ({e})") from e
    run = GaussianMixtureRun(int(config["dim"]), config.get("options", {}))
    run.params = MixtureParameters(state["weights"], state["locs"], state["covariances"])
    return run


GMM_FAMILY = ModelFamily(
    name="gmm",
    summary="Gaussian mixture: closed-form EM, SVI with enumerated assignments (MAP/variational), or NUTS",
    build=_build_gmm,
    add_arguments=_gmm_arguments,
    train=_train_gmm,
    evaluate=_evaluate_gmm,
    load=_load_gmm,
    default_estimator="enum",
)
