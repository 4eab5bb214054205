"""Command-line flags of every ``pyro-gen compare`` target.

This module imports only the standard library, so building the ``compare`` sub-commands
(``pyro-gen --help``) loads neither torch nor Pyro; each target's heavy module is imported
when it runs.
"""

from __future__ import annotations

import argparse

DEFAULT_ESTIMATORS = "reparam,analytic-kl,score,score-baseline,stl,iwae:5,dreg:5"
# compare discrete: method -> (estimator, name of the guide method of DiscreteVAE)
DISCRETE_METHODS = {
    "enum": ("enum", "guide_enumerated"),
    "score-baseline": ("score-baseline", "guide"),
    "score-nn": ("score-nn", "guide"),
    "score-loo": ("score-loo:4", "guide"),
    "score": ("score", "guide"),
    "vimco": ("vimco:5", "guide"),
    "rws": ("rws:5", "guide"),
    "relaxed": ("analytic-kl", "guide_relaxed"),
}
DEFAULT_DISCRETE_METHODS = ("enum", "score-baseline", "score-loo", "relaxed")
GMM_METHODS = ("em", "svi-map", "svi-normal", "nuts")
DEFAULT_FAMILIES = ("made", "pixelcnn", "flow", "vae", "gan", "autoencoder", "ebm")
BUDGETS = ("full", "quick", "smoke")


def _threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1 is fastest for small nets)"
    )


def _common(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("--data", default="digits", help="digits | mnist:PATH (binary image data)")
    p.add_argument("--binarize", default="dynamic", choices=["dynamic", "static", "none"])
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps per method (same budget)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=default_out, help="report folder")
    _threads(p)
    p.add_argument("--no-progress", action="store_true")


def vae_arguments(p: argparse.ArgumentParser) -> None:
    """Add the flags of ``pyro-gen compare vae`` (gradient estimators on one VAE) to ``p``."""
    _common(p, "runs/compare-estimators")
    p.add_argument("--estimators", default=DEFAULT_ESTIMATORS, help="comma-separated estimator names")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--hidden", default="256", help="encoder widths, comma-separated")
    p.add_argument("--checkpoints", type=int, default=5, help="variance checkpoints from step 0 to the end")
    p.add_argument("--variance-draws", type=int, default=30, help="gradient draws per checkpoint")
    p.add_argument("--k", type=int, default=1000, help="importance samples for the test log p(x)")
    p.add_argument("--device", default=None, help="where the VAEs train: cpu | cuda | cuda:N | auto")
    p.add_argument(
        "--eval-every", type=int, default=None, help="held-out ELBO every N steps (default steps/20)"
    )
    p.add_argument("--eval-particles", type=int, default=100, help="particles for the final ELBOs")


USER_ESTIMATORS = "reparam,score,score-baseline,stl,iwae:5,dreg:5"
USER_GUIDES = ("normal", "lowrank", "iaf")


def _user_program(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="your program (required): FILE.py:NAME or package.module:NAME (as in `pyro-gen fit --model`)",
    )
    p.add_argument(
        "--data", default="digits", help="PATH.npy|.npz|.csv|.pt (20%% held out by --seed), or a built-in set"
    )
    p.add_argument("--binarize", default="none", choices=["dynamic", "static", "none"])
    p.add_argument("--seed", type=int, default=0)
    _threads(p)
    p.add_argument("--no-progress", action="store_true")


def require_model(args: argparse.Namespace, target: str) -> str:
    """Return ``args.model``; ``ValueError`` naming the flag when it was not given."""
    if not args.model:
        raise ValueError(f"compare {target} needs your program: --model FILE.py:NAME")
    return args.model


def estimators_arguments(p: argparse.ArgumentParser) -> None:
    """Add the flags of ``pyro-gen compare estimators`` (gradient estimators on your program) to ``p``."""
    _user_program(p)
    p.add_argument(
        "--estimators",
        default=None,
        help=f"comma-separated estimator names (default {USER_ESTIMATORS}, leaving out those the "
        "program cannot run; named ones that cannot run are refused)",
    )
    p.add_argument(
        "--guide",
        default="own",
        choices=("own", *USER_GUIDES),
        help="own: the program's guide (AutoNormal without one); normal | lowrank | iaf: an automatic guide",
    )
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps per estimator (same budget)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--out", default="runs/compare-estimators-user", help="report folder")
    p.add_argument("--checkpoints", type=int, default=5, help="variance checkpoints from step 0 to the end")
    p.add_argument("--variance-draws", type=int, default=30, help="gradient draws per checkpoint")
    p.add_argument("--k", type=int, default=1000, help="guide draws for the held-out log p(x)")
    p.add_argument("--device", default=None, help="where the program trains: cpu | cuda | cuda:N | auto")
    p.add_argument(
        "--eval-every", type=int, default=None, help="held-out ELBO every N steps (default steps/20)"
    )
    p.add_argument("--eval-particles", type=int, default=10, help="particles for the final ELBOs")


def inference_arguments(p: argparse.ArgumentParser) -> None:
    """Add the flags of ``pyro-gen compare inference`` (SVI guides against NUTS on your program) to ``p``."""
    _user_program(p)
    p.add_argument(
        "--guides",
        default=",".join(USER_GUIDES),
        help="comma-separated automatic guides: normal (AutoNormal), lowrank "
        "(AutoLowRankMultivariateNormal), iaf (AutoIAFNormal); own adds the program's guide",
    )
    p.add_argument("--steps", type=int, default=3000, help="SVI steps per guide (full batch, Adam)")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument(
        "--num-samples", type=int, default=1000, help="posterior draws per method (NUTS: per chain)"
    )
    p.add_argument("--nuts-warmup", type=int, default=500)
    p.add_argument("--nuts-chains", type=int, default=2)
    p.add_argument("--k", type=int, default=1000, help="importance samples for PSIS k-hat")
    p.add_argument("--out", default="runs/compare-inference-user", help="report folder")


def discrete_arguments(p: argparse.ArgumentParser) -> None:
    """Add the flags of ``pyro-gen compare discrete`` (binary-latent VAE estimators) to ``p``."""
    _common(p, "runs/compare-discrete")
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_DISCRETE_METHODS),
        help=f"comma-separated: {', '.join(DISCRETE_METHODS)}",
    )
    p.add_argument("--num-latents", type=int, default=8, help="binary latents (2^L codes are enumerated)")
    p.add_argument("--hidden", default="128")
    p.add_argument("--temperature", type=float, default=0.5, help="relaxation temperature")


def gmm_arguments(p: argparse.ArgumentParser) -> None:
    """Add the flags of ``pyro-gen compare gmm`` (EM, SVI-MAP, SVI-variational, NUTS) to ``p``."""
    p.add_argument(
        "--data", default="synthetic", help="synthetic | digits | moons | ring | grid | mnist:PATH"
    )
    p.add_argument("--pca-dim", type=int, default=None, help="project the data on this many PCA components")
    p.add_argument("--components", type=int, default=3, help="K for the four-way comparison")
    p.add_argument("--covariance-type", default="full", choices=["full", "diag"])
    p.add_argument(
        "--methods", default=",".join(GMM_METHODS), help="comma-separated subset of " + ",".join(GMM_METHODS)
    )
    p.add_argument("--svi-steps", type=int, default=1000)
    p.add_argument("--svi-lr", type=float, default=0.05)
    p.add_argument("--nuts-samples", type=int, default=200, help="draws per chain")
    p.add_argument("--nuts-warmup", type=int, default=200)
    p.add_argument("--nuts-chains", type=int, default=2)
    p.add_argument("--k-range", default="1-5", help="model selection over K, e.g. 1-5 or 2,3,4 ('' to skip)")
    p.add_argument("--loo-k-range", default=None, help="K values for PSIS-LOO (default: --k-range)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="report folder (default runs/compare-gmm-<data>)")
    p.add_argument("--no-progress", action="store_true")


def families_arguments(p: argparse.ArgumentParser) -> None:
    """Add the flags of ``pyro-gen compare families`` (every family on one table) to ``p``."""
    p.add_argument("--data", default="digits", help="digits | mnist:PATH (image data with labels)")
    p.add_argument("--out", default=None, help="report folder (default reports/families-<data>)")
    p.add_argument("--families", default=",".join(DEFAULT_FAMILIES), help="comma-separated family names")
    p.add_argument(
        "--budget", default="full", choices=BUDGETS, help="training budget per family (its declared budget)"
    )
    p.add_argument("--k", type=int, default=5000, help="importance samples for the VAE's log-likelihood")
    p.add_argument(
        "--num-samples", type=int, default=1000, help="samples per family for the Frechet distance"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default=None, help="where families train: cpu | cuda | cuda:N | auto")
    p.add_argument(
        "--reuse", action="store_true", help="keep run folders already trained with these settings"
    )


def split_names(text: str, flag: str) -> list[str]:
    """Return the non-empty comma-separated names of ``text``; ``ValueError`` naming ``flag`` if none."""
    names = [s.strip() for s in str(text).split(",") if s.strip()]
    if not names:
        raise ValueError(f"{flag} is empty")
    return names
