"""The Gaussian-mixture family: ``pyro-gen fit gmm --data ... --method em|svi|nuts``.

``em`` is closed-form EM (:class:`~pyro_gen.inference.em.GaussianMixtureEM`); ``svi`` fits the
Pyro model (:mod:`pyro_gen.models.gmm`) with ``TraceEnum_ELBO`` and a MAP (``AutoDelta``) or
variational (``AutoNormal``) guide through the engine; ``nuts`` samples the posterior with
NUTS. Every method starts from EM's starting point, chosen by ``--init``: ``kmeans`` (the
default, scikit-learn's: the labels of one ``sklearn.cluster.KMeans`` run seeded by the run's
seed), ``kmeans++`` (k-means++ seeds, each point to its nearest) or ``random`` (random data
points as seeds); ``metrics.json`` records it as ``init``. EM and NUTS are not gradient
training: training settings they cannot honour (``--lr``, ``--batch-size``, ...) are refused.
The fitted mixture is saved as ``mixture.pt`` in the run folder, which ``pyro-gen sample`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import require_positive, setting
from ..registry import ModelFamily

MIXTURE_FILE = "mixture.pt"
# the starts of pyro_gen.inference.em.INITS (spelled here too: the flags are built without torch)
INITS = ("kmeans", "kmeans++", "random")
# the training settings each method honours (seed, progress and threads always apply)
HONOURED = {
    "em": {"seed", "progress", "threads"},
    "nuts": {"seed", "progress", "threads"},
    "svi": None,  # all of them: the engine runs it
}


@dataclass
class GMMConfig:
    """Settings of the Gaussian mixture and of its three fitting methods."""

    method: str = setting("em", "how to fit the mixture", choices=("em", "svi", "nuts"))
    components: int = setting(8, "number of mixture components K")
    covariance_type: str = setting(
        "full", "covariance structure (spherical: EM only)", choices=("full", "diag", "spherical")
    )
    init: str = setting(
        "kmeans",
        "start of every method: k-means labels (scikit-learn's), k-means++ seeds or random points",
        choices=INITS,
    )
    n_init: int = setting(1, "EM restarts")
    max_iter: int = setting(200, "EM iterations at most")
    tol: float = setting(1e-3, "EM stops when the log-likelihood per point changes less")
    reg_covar: float = setting(1e-6, "added to covariance diagonals")
    guide: str = setting("map", "svi: AutoDelta (MAP) or AutoNormal (variational)", choices=("map", "normal"))
    num_samples: int = setting(300, "nuts: draws per chain")
    num_warmup: int = setting(300, "nuts: warm-up steps per chain")
    num_chains: int = setting(2, "nuts: chains (run one after another)")

    def __post_init__(self) -> None:
        require_positive(self, "components")
        if self.covariance_type == "spherical" and self.method != "em":
            raise ValueError("--covariance-type spherical is supported by --method em only")
        require_positive(self, "n_init", "max_iter", "num_samples", "num_chains")


class GaussianMixtureRun:
    """What the family builds and trains: settings plus, once fitted, the :class:`MixtureParameters`.

    ``sample(num)`` draws (num, D) points; ``log_prob(x)`` gives (N,) nats per point.
    """

    def __init__(self, dim: int, config: GMMConfig) -> None:
        self.dim = int(dim)
        self.config = config
        self.params = None
        self.extra: dict[str, Any] = {}

    def fitted(self):
        """Return the fitted :class:`~pyro_gen.models.gmm.MixtureParameters` (``ValueError`` before)."""
        if self.params is None:
            raise ValueError("the mixture is not fitted yet")
        return self.params

    def sample(self, num: int):
        """Draw ``num`` points from the fitted mixture, a (num, D) float tensor."""
        return self.fitted().sample(num)

    def log_prob(self, x):
        """Return ``log p(x_n)`` per row (nats) under the fitted (plug-in) mixture."""
        return self.fitted().log_prob(x)


def gmm_honours(cfg: GMMConfig) -> tuple[set[str] | None, str]:
    """Return the training settings ``cfg.method`` can use (None: all, for SVI) and the method's flag."""
    return HONOURED[cfg.method], f"--method {cfg.method}"


def build_gmm(data, cfg: GMMConfig) -> GaussianMixtureRun:
    """Return an unfitted :class:`GaussianMixtureRun` for ``data``."""
    return GaussianMixtureRun(data.dim, cfg)


def train_gmm(
    model: GaussianMixtureRun,
    data,
    cfg: GMMConfig,
    train_config,
    given: set[str],
    *,
    checkpoint=None,
    resume=None,
    callbacks=(),
    **_: Any,
):
    """Fit the mixture by ``cfg.method``; return the method's :class:`~pyro_gen.inference.FitResult`.

    Refuses ``--resume`` for EM and NUTS (they keep no checkpoints; the training settings they
    cannot use are refused by :func:`gmm_honours` when the run is planned); SVI runs on the
    engine with its checkpoints.
    """
    if resume is not None and cfg.method != "svi":
        raise ValueError(f"--resume: --method {cfg.method} keeps no checkpoints to resume from (svi does)")
    import pyro
    from pyro.infer import TraceEnum_ELBO

    from ..inference.em import GaussianMixtureEM, initial_parameters
    from ..inference.mcmc import fit_nuts
    from ..inference.svi import fit
    from ..models.gmm import GaussianMixtureModel, MixtureParameters

    seed = int(train_config.seed or 0)
    x = data.train.float()
    progress = train_config.progress
    if cfg.method == "em":
        em = GaussianMixtureEM(
            cfg.components,
            covariance_type=cfg.covariance_type,
            tol=cfg.tol,
            max_iter=cfg.max_iter,
            n_init=cfg.n_init,
            init=cfg.init,
            reg_covar=cfg.reg_covar,
            seed=seed,
        ).fit(x)
        model.params = MixtureParameters(em.weights_, em.means_, em.covariance_matrices())
        model.extra = {
            "bic": em.bic(x),
            "aic": em.aic(x),
            "converged": em.converged_,
            "n_iter": em.n_iter_,
        }
        return em.result_
    gmm = GaussianMixtureModel.from_data(x, cfg.components, cfg.covariance_type)
    w0, m0, c0 = initial_parameters(
        x, cfg.components, cfg.covariance_type, init=cfg.init, reg_covar=cfg.reg_covar, seed=seed
    )
    init = gmm.init_values(w0, m0, c0)
    if cfg.method == "svi":
        pyro.clear_param_store()
        guide = gmm.map_guide(init) if cfg.guide == "map" else gmm.variational_guide(init)
        result = fit(
            gmm.model,
            x,
            guide=guide,
            estimator=TraceEnum_ELBO(max_plate_nesting=1),
            test_data=data.test.float(),
            config=train_config,
            checkpoint=checkpoint,
            resume=resume,
            callbacks=callbacks,
        )
        result.estimator = f"svi-{cfg.guide}"
        model.params = gmm.parameters_from(guide.median(x))
        return result
    result = fit_nuts(
        gmm,
        x,
        num_samples=cfg.num_samples,
        warmup_steps=cfg.num_warmup,
        num_chains=cfg.num_chains,
        init=init,
        reference_locs=m0,
        seed=seed,
        progress=bool(progress),
    )
    model.params = result.params["posterior_mean"]
    model.extra = {
        "max_rhat": result.params["max_rhat"],
        "divergences": result.params["divergences"],
        "nuts_result": result,
    }
    return result


def evaluate_gmm(model: GaussianMixtureRun, data, cfg: GMMConfig, seed: int = 0) -> dict:
    """Return train/test log-likelihoods (nats per point), the start, and BIC/AIC or NUTS diagnostics.

    ``init`` is the start of the run (``--init``); EM adds ``bic``/``aic`` (nats), ``converged``
    and ``n_iter`` (EM iterations of the best restart).
    """
    from ..inference.mcmc import log_predictive_density

    params = model.fitted()
    metrics = {
        "train_log_likelihood": float(params.log_prob(data.train).mean()),
        "test_log_likelihood": float(params.log_prob(data.test).mean()),
        "likelihood_kind": "exact",
        "init": cfg.init,
    }
    for key in ("bic", "aic", "converged", "n_iter", "max_rhat", "divergences"):
        if key in model.extra:
            metrics[key] = model.extra[key]
    if "nuts_result" in model.extra:  # convergence checks that failed, one line each
        metrics["warnings"] = list(model.extra["nuts_result"].params.get("warnings", []))
    if "nuts_result" in model.extra:
        metrics["test_log_predictive_density"] = log_predictive_density(model.extra["nuts_result"], data.test)
    return metrics


def gmm_state(model: GaussianMixtureRun) -> dict:
    """Return the fitted mixture as tensors (``weights``, ``locs``, ``covariances``) and the method."""
    return {**model.fitted().to_dict(), "method": model.config.method}


def load_gmm(run_dir, cfg: GMMConfig, data) -> GaussianMixtureRun:
    """Rebuild the fitted mixture of a run folder from its ``mixture.pt``."""
    import torch

    from ..models.gmm import MixtureParameters

    path = Path(run_dir) / MIXTURE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the run folder has no fitted mixture")
    try:
        state = torch.load(path, weights_only=True)
    except Exception as e:  # torch raises several types for a damaged file
        raise ValueError(f"{path} is not a readable mixture file ({e})") from e
    run = GaussianMixtureRun(data.dim, cfg)
    run.params = MixtureParameters(state["weights"], state["locs"], state["covariances"])
    return run


GMM_FAMILY = ModelFamily(
    name="gmm",
    summary="Gaussian mixture: closed-form EM, SVI with enumerated assignments (MAP/variational), or NUTS",
    build=build_gmm,
    config=GMMConfig,
    trainer="custom",
    train=train_gmm,
    honours=gmm_honours,
    default_estimator="enum",
    # a density over the pixels as loaded: binarizing would score a 0/1 test set under a
    # mixture fitted to grey levels
    defaults={"binarize": "none"},
    evaluate=evaluate_gmm,
    load=load_gmm,
    state=gmm_state,
    state_file=MIXTURE_FILE,
    likelihood="exact",
    role="mixture",
)
