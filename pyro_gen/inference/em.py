"""Closed-form expectation-maximization for Gaussian mixtures, as a scikit-learn-style estimator.

EM alternates an E-step (responsibilities ``r_nk = p(z_n = k | x_n, theta)``, computed in
log space with log-sum-exp) and an M-step (weights, means and covariances in closed form
from the responsibilities). After each E-step the ELBO equals the log-likelihood, and the
M-step maximizes the ELBO, so the log-likelihood never decreases (Dempster, Laird & Rubin
1977; Bishop, *PRML* section 9.2). :class:`GaussianMixtureEM` follows
``sklearn.mixture.GaussianMixture`` step for step (same convergence rule, same ``reg_covar``
regularization, same parameter counting for BIC/AIC) but runs vectorized in torch: log
densities use precision Cholesky factors and all components at once in one matrix product.

Pyro has no EM (its GMM tutorial fits MAP by gradient ascent), so the algorithm is written
here. The default start is scikit-learn's (``init_params="kmeans"``): the hard labels of one
``sklearn.cluster.KMeans`` run (``n_init=1``, seeded by ``seed``), then one M-step; k-means
itself and the k-means++ seeding of the other start come from scikit-learn.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from ..data.checks import as_data_tensor
from .result import FitResult

COVARIANCE_TYPES = ("full", "diag", "spherical")
# kmeans: labels of one KMeans run (scikit-learn's default start); kmeans++: k-means++ seeds,
# each point to its nearest seed; random: K distinct random data points as seeds, nearest seed.
INITS = ("kmeans", "kmeans++", "random")
# Work on blocks of rows so the (rows, K, D) intermediates stay near this many elements.
_BLOCK_ELEMENTS = 1 << 22


def _row_blocks(n: int, width: int) -> list[slice]:
    rows = max(256, _BLOCK_ELEMENTS // max(1, width))
    return [slice(s, min(n, s + rows)) for s in range(0, n, rows)]


class _Clock:
    """Wall and CPU seconds spent inside :meth:`timing` blocks, and per-iteration wall times."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.step_seconds: list[float] = []

    @contextmanager
    def timing(self, step: bool = False) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.seconds += dt
            self.cpu_seconds += time.process_time() - c0
            if step:
                self.step_seconds.append(dt)

    def row(self, step: int, ll: float, restart: int) -> dict:
        # After an E-step the ELBO equals the log-likelihood, so it is also logged as train_elbo
        # (the key the generic ELBO plots read); both in nats per data point.
        return {
            "step": step,
            "epoch": float(step),
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "eval_seconds": 0.0,
            "log_likelihood": ll,
            "train_elbo": ll,
            "test_elbo": None,
            "restart": restart,
        }

    def step_ms(self) -> dict[str, float]:
        if not self.step_seconds:
            return {}
        ms = 1000.0 * np.asarray(self.step_seconds)
        p10, median, p90 = np.percentile(ms, [10, 50, 90])
        return {"median": float(median), "p10": float(p10), "p90": float(p90), "n": len(ms)}


class GaussianMixtureEM:
    """A Gaussian mixture fitted by expectation-maximization (maximum likelihood).

    Parameters mirror ``sklearn.mixture.GaussianMixture``: ``n_components`` (K),
    ``covariance_type`` (``"full"``, ``"diag"`` or ``"spherical"``), ``tol`` (stop when the
    average log-likelihood per point changes by less than this, in nats), ``max_iter``,
    ``n_init`` (restarts; the best final log-likelihood wins), ``init`` (``"kmeans"``, the
    default and scikit-learn's: the labels of one ``sklearn.cluster.KMeans`` run with
    ``n_init=1``, its random state a ``numpy.random.RandomState(seed)`` shared by the restarts,
    exactly as scikit-learn seeds it; ``"kmeans++"``: k-means++ seeds, each point assigned to
    its nearest seed; ``"random"``: K distinct random data points as seeds, nearest seed),
    ``reg_covar`` (added to the covariance diagonals; ``0`` makes a singular
    covariance an error), ``seed``. ``weights_init``, ``means_init`` and ``precisions_init``
    (same shapes and meaning as in scikit-learn) fix the starting point. ``dtype`` is the
    torch dtype of the computation (float64 by default, as scikit-learn).

    Learned state (after :meth:`fit`): ``weights_`` (K,), ``means_`` (K, D),
    ``covariances_`` ((K, D, D) full, (K, D) diag, (K,) spherical), ``precisions_cholesky_``
    (same shapes; upper-triangular factors for full), ``converged_``, ``n_iter_``,
    ``lower_bound_`` (average log-likelihood in nats per point of the last E-step, as
    scikit-learn), ``log_likelihood_`` (of the final parameters, nats per point),
    ``start_`` (the start used: ``init``, ``"given"`` when ``weights_init``, ``means_init`` and
    ``precisions_init`` are all given, ``init + "+given"`` when some are),
    ``log_likelihood_history_`` (one value per E-step, starting at the initial parameters;
    never decreasing up to float round-off) and ``result_`` (a :class:`FitResult` of kind
    ``"em"``: ``steps`` and ``epochs`` are the EM iterations of all restarts, ``seconds`` and
    ``cpu_seconds`` the wall and CPU time of initialization and iterations; one history row
    per E-step with the cumulative ``step``, the ``restart`` and its ``log_likelihood``).
    """

    def __init__(
        self,
        n_components: int = 1,
        covariance_type: str = "full",
        tol: float = 1e-3,
        max_iter: int = 100,
        n_init: int = 1,
        init: str = "kmeans",
        reg_covar: float = 1e-6,
        seed: int | None = 0,
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init = init
        self.reg_covar = reg_covar
        self.seed = seed
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.dtype = dtype

    # ------------------------------------------------------------------ validation
    def _check_params(self, n: int, d: int) -> None:
        k = self.n_components
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"n_components must be a positive integer, got {k!r}")
        if k > n:
            raise ValueError(f"n_components={k} is larger than the number of data points N={n}")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}, got {self.covariance_type!r}"
            )
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if not (self.tol >= 0):
            raise ValueError(f"tol must be non-negative, got {self.tol!r}")
        if not isinstance(self.max_iter, int | np.integer) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if not isinstance(self.n_init, int | np.integer) or self.n_init < 1:
            raise ValueError(f"n_init must be a positive integer, got {self.n_init!r}")
        if not (self.reg_covar >= 0):
            raise ValueError(f"reg_covar must be non-negative, got {self.reg_covar!r}")
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {self.dtype}")

    def _as_input(self, x: Any, name: str = "X") -> torch.Tensor:
        x = as_data_tensor(x, name, min_rank=2, max_rank=2, dtype=None).to(self.dtype)
        if hasattr(self, "means_") and x.shape[1] != self.means_.shape[1]:
            raise ValueError(
                f"{name} has {x.shape[1]} features but the mixture was fitted on {self.means_.shape[1]}"
            )
        return x

    def _check_fitted(self) -> None:
        if not hasattr(self, "means_"):
            raise ValueError("this GaussianMixtureEM is not fitted yet: call fit(X) first")

    def _user_init(self, k: int, d: int) -> tuple:
        def tens(v, shape, name):
            if v is None:
                return None
            t = torch.as_tensor(np.asarray(v), dtype=self.dtype)
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} contains NaN or infinite values")
            return t

        w = tens(self.weights_init, (k,), "weights_init")
        if w is not None and (bool((w < 0).any()) or abs(float(w.sum()) - 1.0) > 1e-6):
            raise ValueError("weights_init must be non-negative and sum to 1")
        m = tens(self.means_init, (k, d), "means_init")
        pshape = {"full": (k, d, d), "diag": (k, d), "spherical": (k,)}[self.covariance_type]
        p = tens(self.precisions_init, pshape, "precisions_init")
        return w, m, p

    # ------------------------------------------------------------------ the two steps
    def _precision_cholesky(self, cov: torch.Tensor) -> torch.Tensor:
        """Cholesky factors of the precisions (upper-triangular U with U U^T = Sigma^-1 for full)."""
        if self.covariance_type == "full":
            chol, info = torch.linalg.cholesky_ex(cov)
            if bool((info > 0).any()):
                bad = int((info > 0).nonzero()[0])
                raise ValueError(
                    f"the covariance of component {bad} is singular (not positive definite): "
                    "collapsed onto too few or collinear points; "
                    f"increase reg_covar (now {self.reg_covar:g}), "
                    "reduce n_components or remove duplicated/collinear features"
                )
            eye = torch.eye(cov.shape[-1], dtype=cov.dtype).expand_as(cov)
            return torch.linalg.solve_triangular(chol, eye, upper=False).transpose(-1, -2)
        if bool((cov <= 0).any()):
            bad = int((cov <= 0).nonzero()[0][0])
            raise ValueError(
                f"the {self.covariance_type} covariance of component {bad} has a zero variance: "
                f"increase reg_covar (now {self.reg_covar:g}) or reduce n_components"
            )
        return cov.rsqrt()

    def _estimate_log_gaussian(self, x: torch.Tensor, means, prec_chol) -> torch.Tensor:
        """Return ``log N(x_n | mu_k, Sigma_k)`` as an (N, K) tensor (nats)."""
        n, d = x.shape
        k = means.shape[0]
        if self.covariance_type == "full":
            log_det = prec_chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K,) = -0.5 log|Sigma|
            p_all = prec_chol.permute(1, 0, 2).reshape(d, k * d)  # x @ p_all = [x U_1, ..., x U_K]
            shift = torch.einsum("kd,kde->ke", means, prec_chol).reshape(k * d)
            maha = torch.empty(n, k, dtype=x.dtype)
            for rows in _row_blocks(n, k * d):
                y = torch.addmm(-shift, x[rows], p_all) if x[rows].shape[0] else x[rows] @ p_all
                maha[rows] = y.square_().view(-1, k, d).sum(-1)
        elif self.covariance_type == "diag":
            prec = prec_chol.square()  # (K, D)
            log_det = prec_chol.log().sum(-1)
            maha = (
                x.square() @ prec.T - 2.0 * (x @ (means * prec).T) + (means.square() * prec).sum(-1)
            ).clamp_(min=0.0)
        else:
            prec = prec_chol.square()  # (K,)
            log_det = d * prec_chol.log()
            maha = (x.square().sum(-1, keepdim=True) - 2.0 * (x @ means.T) + means.square().sum(-1)) * prec
            maha.clamp_(min=0.0)
        return -0.5 * (d * math.log(2 * math.pi) + maha) + log_det

    def _e_step(self, x: torch.Tensor, weights, means, prec_chol) -> tuple[float, torch.Tensor]:
        """Return (mean log-likelihood in nats per point, log responsibilities (N, K))."""
        weighted = self._estimate_log_gaussian(x, means, prec_chol) + weights.log()
        log_norm = torch.logsumexp(weighted, dim=1)
        return float(log_norm.mean()), weighted.sub_(log_norm[:, None])

    def _m_step(self, x: torch.Tensor, resp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Closed-form maximizer of the expected complete log-likelihood: (weights, means, covariances)."""
        n, d = x.shape
        eps = 10 * torch.finfo(x.dtype).eps
        nk = resp.sum(0) + eps  # (K,)
        sx = resp.T @ x  # (K, D)
        means = sx / nk[:, None]
        k = means.shape[0]
        if self.covariance_type == "full":
            # Weighted second moments sum_n r_nk x_n x_n^T for all k in one product per row
            # block: x^T @ [r_1 * x, ..., r_K * x]; then centre: S_k / n_k - mu_k mu_k^T.
            second = torch.zeros(d, k * d, dtype=x.dtype)
            for rows in _row_blocks(n, k * d):
                xb = x[rows]
                rx = (resp[rows, :, None] * xb[:, None, :]).reshape(-1, k * d)
                second.addmm_(xb.T, rx)
            second = second.view(d, k, d).permute(1, 0, 2)  # (K, D, D)
            cov = second / nk[:, None, None] - means[:, :, None] * means[:, None, :]
            cov = 0.5 * (cov + cov.transpose(-1, -2))
            cov.diagonal(dim1=-2, dim2=-1).add_(self.reg_covar)
        else:
            avg_x2 = (resp.T @ x.square()) / nk[:, None]
            var = avg_x2 - means.square()
            # differences at round-off level of the second moment are a collapsed component: exact 0
            var = torch.where(var > 1e3 * torch.finfo(x.dtype).eps * avg_x2, var, torch.zeros_like(var))
            diag = var + self.reg_covar  # (K, D)
            cov = diag if self.covariance_type == "diag" else diag.mean(-1)
        return nk / n, means, cov

    # ------------------------------------------------------------------ initialization
    def _initial_resp(
        self,
        x: torch.Tensor,
        k: int,
        rng: np.random.Generator,
        means=None,
        kmeans_state: np.random.RandomState | None = None,
        raw: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return hard responsibilities (N, K) of the start (one 1 per row).

        ``init="kmeans"``: the labels of one ``KMeans(n_init=1, random_state=kmeans_state)`` run
        on ``raw`` (the data as given; ``x`` when absent). Otherwise each row goes to its nearest
        seed: ``means`` when given, else k-means++ seeds or random data points drawn with ``rng``.
        """
        resp = torch.zeros(x.shape[0], k, dtype=x.dtype)
        rows = torch.arange(x.shape[0])
        if means is None and self.init == "kmeans":
            from sklearn.cluster import KMeans

            data = (raw if raw is not None else x).numpy()
            labels = KMeans(n_clusters=k, n_init=1, random_state=kmeans_state).fit(data).labels_
            resp[rows, torch.as_tensor(labels, dtype=torch.long)] = 1.0
            return resp
        if means is None:
            if self.init == "kmeans++":
                from sklearn.cluster import kmeans_plusplus

                seeds, _ = kmeans_plusplus(x.numpy(), k, random_state=int(rng.integers(2**31 - 1)))
                means = torch.as_tensor(seeds, dtype=x.dtype)
            else:
                means = x[torch.as_tensor(rng.choice(x.shape[0], size=k, replace=False))]
        d2 = x.square().sum(-1, keepdim=True) - 2 * x @ means.T + means.square().sum(-1)
        resp[rows, d2.argmin(1)] = 1.0
        return resp

    def _initialize(self, x: torch.Tensor, rng: np.random.Generator, kmeans_state=None, raw=None):
        k, d = self.n_components, x.shape[1]
        w0, m0, p0 = self._user_init(k, d)
        if w0 is not None and m0 is not None and p0 is not None:
            weights, means = w0, m0
            cov = None
        else:
            resp = self._initial_resp(x, k, rng, means=m0, kmeans_state=kmeans_state, raw=raw)
            weights, means, cov = self._m_step(x, resp)
            weights = w0 if w0 is not None else weights
            means = m0 if m0 is not None else means
        if p0 is not None:
            if self.covariance_type == "full":
                chol, info = torch.linalg.cholesky_ex(p0)
                if bool((info > 0).any()):
                    raise ValueError("precisions_init must be symmetric positive definite")
                prec_chol = chol  # lower L with L L^T = P; x @ L gives the same Mahalanobis norm
            else:
                if bool((p0 <= 0).any()):
                    raise ValueError("precisions_init must be positive")
                prec_chol = p0.sqrt()
        else:
            prec_chol = self._precision_cholesky(cov)
        return weights, means, prec_chol

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None) -> GaussianMixtureEM:
        """Fit the mixture to ``X`` (N, D) by EM; returns ``self`` (scikit-learn convention).

        Raises ``ValueError`` for NaN/inf rows, ``n_components`` larger than N, bad
        parameters, and covariances that become singular (with ``reg_covar=0``).
        """
        x = as_data_tensor(X, "X", min_rank=2, max_rank=2, dtype=None).to(self.dtype)
        n, d = x.shape
        self._check_params(n, d)
        for attr in ("means_",):
            if hasattr(self, attr):
                delattr(self, attr)
        # Centre the data: EM is shift-equivariant and the second moments lose fewer digits.
        offset = x.mean(0)
        xc = x - offset
        rng = np.random.default_rng(self.seed)
        # scikit-learn's random state for KMeans: one RandomState(seed) shared by all restarts
        kmeans_state = np.random.RandomState(self.seed)
        clock = _Clock()
        best: dict | None = None
        history: list[dict] = []
        for restart in range(self.n_init):
            step0 = history[-1]["step"] if history else 0
            state = self._fit_one(xc, offset, rng, restart, clock, step0, kmeans_state=kmeans_state, raw=x)
            history += state["history"]
            if best is None or state["log_likelihood"] > best["log_likelihood"]:
                best = state
        assert best is not None
        self.weights_ = best["weights"]
        self.means_ = best["means"] + offset
        self.covariances_ = best["cov"]
        self.precisions_cholesky_ = best["prec_chol"]
        self.converged_ = best["converged"]
        self.n_iter_ = best["n_iter"]
        self.lower_bound_ = best["lower_bound"]
        self.log_likelihood_ = best["log_likelihood"]
        self.log_likelihood_history_ = [row["log_likelihood"] for row in best["history"]]
        self.n_features_in_ = d
        given = [v is not None for v in (self.weights_init, self.means_init, self.precisions_init)]
        # the start actually used: all three *_init given replace the init method altogether
        self.start_ = "given" if all(given) else self.init + ("+given" if any(given) else "")
        steps = history[-1]["step"]
        self.result_ = FitResult(
            model=self,
            history=history,
            steps=steps,
            epochs=float(steps),
            seconds=clock.seconds,
            estimator="em",
            kind="em",
            cpu_seconds=clock.cpu_seconds,
            threads=torch.get_num_threads(),
            device="cpu",
            step_ms=clock.step_ms(),
            params={
                "converged": self.converged_,
                "n_iter": self.n_iter_,
                "restart": best["restart"],
                "log_likelihood": self.log_likelihood_,
                "covariance_type": self.covariance_type,
                "init": self.start_,
            },
        )
        return self

    def _fit_one(
        self, x, offset, rng, restart: int, clock: _Clock, step0: int, kmeans_state=None, raw=None
    ) -> dict:
        """Run EM from one start; return its state and history rows (steps counted from ``step0``)."""
        with clock.timing():
            if self.means_init is not None:
                saved = self.means_init
                self.means_init = np.asarray(saved) - offset.numpy()
                try:
                    weights, means, prec_chol = self._initialize(x, rng, kmeans_state, raw)
                finally:
                    self.means_init = saved
            else:
                weights, means, prec_chol = self._initialize(x, rng, kmeans_state, raw)
        history: list[dict] = []
        prev = -math.inf
        converged = False
        cov = None
        n_iter = 0
        for it in range(1, self.max_iter + 1):
            with clock.timing(step=True):
                ll, log_resp = self._e_step(x, weights, means, prec_chol)
                weights, means, cov = self._m_step(x, log_resp.exp_())
                prec_chol = self._precision_cholesky(cov)
            # ll is the log-likelihood of the parameters this iteration started from
            history.append(clock.row(step0 + it - 1, ll, restart))
            n_iter = it
            if abs(ll - prev) < self.tol:
                converged = True
                break
            prev = ll
        lower_bound = history[-1]["log_likelihood"]
        with clock.timing():
            final_ll, _ = self._e_step(x, weights, means, prec_chol)
        history.append(clock.row(step0 + n_iter, final_ll, restart))
        return {
            "weights": weights,
            "means": means,
            "cov": cov,
            "prec_chol": prec_chol,
            "converged": converged,
            "n_iter": n_iter,
            "lower_bound": lower_bound,
            "log_likelihood": final_ll,
            "history": history,
            "restart": restart,
        }

    # ------------------------------------------------------------------ prediction
    def _weighted_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self._estimate_log_gaussian(x, self.means_, self.precisions_cholesky_) + self.weights_.log()

    def score_samples(self, X: Any) -> torch.Tensor:
        """Return ``log p(x_n)`` for each row of ``X`` as an (N,) tensor, in nats."""
        self._check_fitted()
        return torch.logsumexp(self._weighted_log_prob(self._as_input(X)), dim=1)

    def score(self, X: Any, y: Any = None) -> float:
        """Return the average log-likelihood of ``X`` in nats per data point."""
        return float(self.score_samples(X).mean())

    def predict_proba(self, X: Any) -> torch.Tensor:
        """Return the responsibilities ``p(z_n = k | x_n)`` as an (N, K) tensor (rows sum to 1)."""
        self._check_fitted()
        return torch.softmax(self._weighted_log_prob(self._as_input(X)), dim=1)

    def predict(self, X: Any) -> torch.Tensor:
        """Return the most probable component of each row of ``X`` as an (N,) long tensor."""
        self._check_fitted()
        return self._weighted_log_prob(self._as_input(X)).argmax(1)

    def fit_predict(self, X: Any, y: Any = None) -> torch.Tensor:
        """Fit to ``X`` and return its component labels (an (N,) long tensor)."""
        return self.fit(X).predict(X)

    def covariance_matrices(self) -> torch.Tensor:
        """Return the covariances as full (K, D, D) matrices whatever ``covariance_type``."""
        self._check_fitted()
        cov = self.covariances_
        d = self.means_.shape[1]
        if self.covariance_type == "full":
            return cov
        if self.covariance_type == "diag":
            return torch.diag_embed(cov)
        return cov[:, None, None] * torch.eye(d, dtype=cov.dtype)

    def sample(self, n_samples: int = 1, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n_samples`` points; return ``(X (n, D), component labels (n,))`` like scikit-learn."""
        self._check_fitted()
        if not isinstance(n_samples, int | np.integer) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        g = torch.Generator()
        if seed is None:
            g.seed()
        else:
            g.manual_seed(seed)
        z = torch.multinomial(self.weights_, n_samples, replacement=True, generator=g)
        eps = torch.randn(n_samples, self.means_.shape[1], generator=g, dtype=self.dtype)
        tril = torch.linalg.cholesky(self.covariance_matrices())
        return self.means_[z] + torch.einsum("nij,nj->ni", tril[z], eps), z

    def n_parameters(self) -> int:
        """Return the number of free parameters (weights, means, covariances), as scikit-learn counts."""
        self._check_fitted()
        k, d = self.means_.shape
        cov = {"full": k * d * (d + 1) // 2, "diag": k * d, "spherical": k}[self.covariance_type]
        return int(cov + k * d + k - 1)

    def bic(self, X: Any) -> float:
        """Return the Bayesian information criterion on ``X`` (nats; lower is better)."""
        n = self._as_input(X).shape[0]
        return -2 * self.score(X) * n + self.n_parameters() * math.log(n)

    def aic(self, X: Any) -> float:
        """Return the Akaike information criterion on ``X`` (nats; lower is better)."""
        n = self._as_input(X).shape[0]
        return -2 * self.score(X) * n + 2 * self.n_parameters()

    def __repr__(self) -> str:
        return (
            f"GaussianMixtureEM(n_components={self.n_components}, covariance_type={self.covariance_type!r}, "
            f"tol={self.tol}, max_iter={self.max_iter}, n_init={self.n_init}, init={self.init!r}, "
            f"reg_covar={self.reg_covar}, seed={self.seed})"
        )


def initial_parameters(
    X: Any,
    n_components: int,
    covariance_type: str = "full",
    init: str = "kmeans",
    reg_covar: float = 1e-6,
    seed: int | None = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return EM's starting point ``(weights (K,), means (K, D), covariances (K, D, D))``.

    The hard responsibilities of ``init`` (see :class:`GaussianMixtureEM`: k-means labels by
    default, or each row to its nearest k-means++ / random seed) followed by one M-step: the
    start :class:`GaussianMixtureEM` uses with the same ``seed``, shared by the other methods
    in a comparison so every method starts from the same place (float64 tensors).
    """
    em = GaussianMixtureEM(
        n_components, covariance_type=covariance_type, init=init, reg_covar=reg_covar, seed=seed
    )
    x = as_data_tensor(X, "X", min_rank=2, max_rank=2, dtype=torch.float64)
    em._check_params(x.shape[0], x.shape[1])
    resp = em._initial_resp(
        x, n_components, np.random.default_rng(seed), kmeans_state=np.random.RandomState(seed)
    )
    weights, means, cov = em._m_step(x, resp)
    if covariance_type == "diag":
        cov = torch.diag_embed(cov)
    elif covariance_type == "spherical":
        cov = cov[:, None, None] * torch.eye(x.shape[1], dtype=x.dtype)
    return weights, means, cov
