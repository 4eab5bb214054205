"""The ``user`` family: your own probabilistic program, trained and reported like a built-in.

``pyro-gen fit --model FILE.py:NAME`` (the same as ``pyro-gen fit user --target FILE.py:NAME``)
or ``--model package.module:NAME``. ``NAME`` is an attribute of that module, one of:

* an object with a ``model(x)`` method and optionally a ``guide(x)`` method: an instance
  (an ``nn.Module`` or ``PyroModule`` trains its parameters), or a module itself;
* a tuple ``(model, guide)`` or ``(model,)`` of functions, or a dict with ``"model"`` and
  optionally ``"guide"``;
* a function of ``x``: the model alone;
* a factory: a class, or a function whose first parameter is named ``shape``, called with
  the shape of one data point (``(D,)`` for a table) and returning any of the above.

The model takes the data batch ``x`` (``(N, D)`` float32) and observes its rows inside
``pyro_gen.models.data_plate(x)`` (a ``pyro.plate("data", ...)`` that scales minibatches to
the whole data set); global latents go outside it. Without a guide (or with ``--guide
normal``) the guide is Pyro's ``AutoNormal`` over the global latents; ``--guide lowrank``
gives ``AutoLowRankMultivariateNormal`` and ``--guide iaf`` ``AutoIAFNormal``. A guide whose
sample sites differ from the model's latent sites is refused in one line.

``config.json`` records the target with the file's absolute path, so ``pyro-gen sample``,
``evaluate``, ``diagnose`` and ``fit --resume`` import the same program again. Held-out
scoring (:func:`predictive_log_likelihood`): the test log-likelihood is
``log (1/S) sum_s p(x_n, z_n^s | theta_s) / q(z_n^s | x_n)`` with ``theta_s`` the global
latents and ``z_n^s`` the per-point latents drawn from the guide, ``S = --eval-samples``:
the importance-sampled log p(x_n) of a model with per-point latents only (the IWAE bound),
the log posterior predictive density of a model with global latents only.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import setting
from ..registry import ModelFamily, families, register

if TYPE_CHECKING:
    import torch

GUIDES = ("own", "normal", "lowrank", "iaf")
AUTOGUIDES = {"normal": "AutoNormal", "lowrank": "AutoLowRankMultivariateNormal", "iaf": "AutoIAFNormal"}
DATA_PLATE = "data"  # the plate name of pyro_gen.models.data_plate


def _split_target(target: str) -> tuple[str, str]:
    """Return ``(where, name)`` of ``FILE.py:NAME`` or ``package.module:NAME``."""
    where, sep, name = str(target).rpartition(":")
    if not sep or not where or not name:
        raise ValueError(f"--model {target!r}: give FILE.py:NAME or package.module:NAME")
    if not name.isidentifier():
        raise ValueError(f"--model {target!r}: {name!r} is not a Python name")
    return where, name


def normalize_target(target: str) -> str:
    """Return ``target`` with a file's path made absolute (``ValueError`` when it cannot be found).

    ``package.module:NAME`` is returned as given; ``FILE.py:NAME`` becomes ``/abs/FILE.py:NAME``.
    """
    where, name = _split_target(target)
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser()
        if not path.is_file():
            raise ValueError(f"--model {target}: no such file {where}")
        return f"{path.resolve()}:{name}"
    return f"{where}:{name}"


def _import_file(path: Path):
    """Import the Python file ``path`` as a module of its own (cached by path and contents)."""
    digest = hashlib.sha1(path.read_bytes() + str(path).encode()).hexdigest()[:12]
    mod_name = f"pyro_gen_user_{path.stem}_{digest}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--model {path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    folder = str(path.parent)
    if folder not in sys.path:  # the program may import modules beside it, as a script would
        sys.path.append(folder)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[mod_name]
        raise ValueError(f"--model {path}: importing it failed ({type(e).__name__}: {e})") from None
    return module


def load_target(target: str) -> Any:
    """Return the object ``NAME`` of ``FILE.py:NAME`` or ``package.module:NAME`` (one-line ``ValueError``)."""
    where, name = _split_target(normalize_target(target))
    if where.endswith(".py") or "/" in where:
        module = _import_file(Path(where))
    else:
        try:
            module = importlib.import_module(where)
        except Exception as e:
            raise ValueError(f"--model {target}: cannot import {where} ({type(e).__name__}: {e})") from None
    if not hasattr(module, name):
        public = sorted(n for n in vars(module) if not n.startswith("_"))[:8]
        raise ValueError(f"--model {target}: {where} has no name {name!r} (it has: {', '.join(public)})")
    return getattr(module, name)


def _is_factory(obj: Any) -> bool:
    if inspect.isclass(obj):
        return True
    if inspect.isfunction(obj):
        params = list(inspect.signature(obj).parameters)
        return bool(params) and params[0] == "shape"
    return False


def program_pair(obj: Any, shape: tuple[int, ...], target: str = "the target") -> tuple[Any, Any, Any]:
    """Return ``(program, model_fn, guide_fn or None)`` of a target object (see the module docstring).

    A factory is called with ``shape`` first. ``ValueError`` names what is missing.
    """
    if _is_factory(obj):
        try:
            obj = obj(tuple(shape)) if inspect.signature(obj).parameters else obj()
        except (TypeError, ValueError) as e:
            raise ValueError(f"--model {target}: the factory failed on shape {tuple(shape)} ({e})") from None
    if isinstance(obj, dict):
        if not callable(obj.get("model")):
            raise ValueError(f"--model {target}: the dict has no callable 'model'")
        return obj, obj["model"], obj.get("guide")
    if isinstance(obj, tuple | list):
        if not 1 <= len(obj) <= 2 or not all(callable(f) for f in obj):
            raise ValueError(f"--model {target}: a tuple must be (model,) or (model, guide) functions")
        return obj, obj[0], obj[1] if len(obj) == 2 else None
    if callable(getattr(obj, "model", None)):
        guide = getattr(obj, "guide", None)
        return obj, obj.model, guide if callable(guide) else None
    if inspect.isfunction(obj):
        return obj, obj, None
    raise ValueError(
        f"--model {target}: {type(obj).__name__} has no model: give an object with a model(x) method, "
        "a (model, guide) tuple, a model function or a factory of the data's shape"
    )


def latent_sites(trace: Any) -> dict[str, bool]:
    """Return ``{name: local}`` of the unobserved sample sites of ``trace`` (local: in the data plate)."""
    from pyro.poutine.util import site_is_subsample

    out = {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        if site["infer"].get("is_auxiliary"):
            continue
        out[name] = any(f.name == DATA_PLATE for f in site["cond_indep_stack"])
    return out


def _make_autoguide(kind: str, model_fn):
    from pyro.infer import autoguide

    cls = getattr(autoguide, AUTOGUIDES[kind])
    if kind == "iaf":
        return cls(model_fn, hidden_dim=[32])
    return cls(model_fn)


class _Lazy:
    """The wrapper class, defined on first use so that importing this module loads no torch."""

    cls: type | None = None


def user_model_class() -> type:
    """Return :class:`UserModel`'s class (an ``nn.Module``), defining it on first use."""
    if _Lazy.cls is not None:
        return _Lazy.cls
    import pyro
    import pyro.poutine as poutine
    import torch

    class UserModel(torch.nn.Module):
        """A user's program as a model/guide pair the engine trains and checkpoints.

        ``program`` (when an ``nn.Module``) and ``autoguide`` are submodules, so their
        parameters are saved and restored; ``pyro.param`` sites live in Pyro's param store.
        """

        def __init__(self, program, model_fn, guide_fn, guide_kind: str, rows: torch.Tensor, target: str):
            super().__init__()
            if isinstance(program, torch.nn.Module):
                self.program = program  # a submodule: its parameters are trained and saved
            self.__dict__["_program"] = program
            self._model_fn, self._own_guide = model_fn, guide_fn
            self.target = target
            self.reference_rows = rows
            use_auto = guide_kind != "own" or guide_fn is None
            self.guide_name = (
                AUTOGUIDES["normal" if guide_kind == "own" else guide_kind] if use_auto else "own"
            )
            if use_auto:
                self.autoguide = _make_autoguide("normal" if guide_kind == "own" else guide_kind, self.model)
            self._check(rows, use_auto)

        def model(self, x: torch.Tensor) -> Any:
            """Run the user's model on the batch ``x``."""
            _trainable_store()
            return self._model_fn(x)

        def guide(self, x: torch.Tensor) -> Any:
            """Run the guide (the user's, or the automatic one) on the batch ``x``."""
            _trainable_store()
            if self._own_guide is not None and self.guide_name == "own":
                return self._own_guide(x)
            return self.autoguide(x)

        def _check(self, rows: torch.Tensor, auto: bool) -> None:
            """Refuse a pair whose guide's sites differ from the model's latents; create lazy params."""
            with torch.random.fork_rng(), poutine.block(), pyro.validation_enabled(True):
                try:
                    mtr = poutine.trace(self.model).get_trace(rows)
                except Exception as e:
                    raise ValueError(
                        f"--model {self.target}: the model fails on the data ({_first(e)})"
                    ) from None
                latents = latent_sites(mtr)
                if not latents:
                    raise ValueError(f"--model {self.target}: the model has no latent sample site to infer")
                local = sorted(n for n, is_local in latents.items() if is_local)
                if auto and local:
                    raise ValueError(
                        f"--model {self.target}: latent site(s) {', '.join(local)} lie in the 'data' plate; "
                        f"an automatic guide ({self.guide_name}) fits one value per training row and cannot "
                        "score new data: write an amortized guide(x)"
                    )
                try:
                    gtr = poutine.trace(self.guide).get_trace(rows)
                except Exception as e:
                    raise ValueError(
                        f"--model {self.target}: the guide fails on the data ({_first(e)})"
                    ) from None
            guided = set(latent_sites(gtr))
            if guided != set(latents):
                missing, extra = sorted(set(latents) - guided), sorted(guided - set(latents))
                parts = [
                    f"missing {', '.join(missing)}" if missing else "",
                    f"extra {', '.join(extra)}" if extra else "",
                ]
                raise ValueError(
                    f"--model {self.target}: the guide's sample sites do not match the model's latent sites "
                    f"({'; '.join(p for p in parts if p)}; the model's latents: {', '.join(sorted(latents))})"
                )

        @torch.no_grad()
        def sample(self, n: int) -> torch.Tensor:
            """Return ``n`` posterior-predictive draws of the observed sites, ``(n, W)`` (the program's
            own ``sample(n)`` when it has one): global latents from the guide, per-point latents
            from the prior, inputs from ``n`` training rows drawn with replacement."""
            if callable(getattr(self._program, "sample", None)):
                return torch.as_tensor(self._program.sample(n))
            rows = self.reference_rows
            idx = torch.randint(0, rows.shape[0], (n,))
            x = rows[idx]
            gtr = poutine.trace(self.guide).get_trace(x)
            keep = {
                name: site["value"]
                for name, site in gtr.nodes.items()
                if site["type"] == "sample"
                and not any(f.name == DATA_PLATE for f in site["cond_indep_stack"])
            }
            conditioned = poutine.trace(poutine.condition(self.model, data=keep)).get_trace(x)
            observed = [
                n_ for n_, s in conditioned.nodes.items() if s["type"] == "sample" and s["is_observed"]
            ]
            # uncondition runs first (innermost), then the guide's global draws are conditioned on
            free = poutine.trace(poutine.condition(poutine.uncondition(self.model), data=keep)).get_trace(x)
            parts = [free.nodes[name]["value"].reshape(n, -1) for name in observed if name not in keep]
            if not parts:
                raise ValueError(f"--model {self.target}: the model observes nothing to sample")
            return torch.cat(parts, dim=1).float()

    _Lazy.cls = UserModel
    return UserModel


def _trainable_store() -> None:
    """Give the param store's tensors back their gradients after a checkpoint restored them.

    A restored ``pyro.param`` comes back without ``requires_grad``; a program whose only
    parameters are ``pyro.param`` sites would then look parameter-free to the first resumed step.
    """
    import pyro
    import torch

    if not torch.is_grad_enabled():
        return
    for _, value in pyro.get_param_store().named_parameters():
        if not value.requires_grad and value.is_leaf and value.is_floating_point():
            value.requires_grad_(True)


def _first(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@dataclass
class UserConfig:
    """Settings of the user family: the program to load, the guide to pair with it, its evaluation."""

    target: str = setting("", "your program: FILE.py:NAME or package.module:NAME (fit --model is the same)")
    guide: str = setting(
        "own",
        "own: the program's guide (AutoNormal when it has none); normal | lowrank | iaf: AutoNormal, "
        "AutoLowRankMultivariateNormal, AutoIAFNormal over the global latents",
        choices=GUIDES,
    )
    eval_samples: int = setting(
        1000, "guide draws per test point for the held-out log-likelihood (this family's --k)"
    )

    def __post_init__(self) -> None:
        if not self.target:
            raise ValueError("the user family needs its program: --model FILE.py:NAME (or --target)")
        self.target = normalize_target(self.target)
        if self.guide not in GUIDES:
            raise ValueError(f"--guide must be one of {', '.join(GUIDES)}, got {self.guide!r}")
        if (
            isinstance(self.eval_samples, bool)
            or not isinstance(self.eval_samples, int)
            or self.eval_samples < 1
        ):
            raise ValueError(f"--eval-samples must be a positive integer, got {self.eval_samples!r}")
        load_target(self.target)  # no such file / name: one line before anything is written


def build_user_model(data: Any, cfg: UserConfig) -> Any:
    """Return the user's program for ``data`` (a :class:`~pyro_gen.data.DataSplit`) as a ``UserModel``.

    The guide's sites are checked against the model's latents on the first training rows; under
    ``torchrun`` a program whose parameters are all ``pyro.param`` sites is refused (one line).
    """
    program, model_fn, guide_fn = program_pair(load_target(cfg.target), tuple(data.shape), cfg.target)
    import os

    rows = data.train[: min(int(data.train.shape[0]), 4096)]
    model = user_model_class()(program, model_fn, guide_fn, cfg.guide, rows, cfg.target)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            f"--model {cfg.target}: under torchrun the parameters must live in an nn.Module (the program "
            "itself, or an automatic guide: --guide normal); pyro.param sites are not shared across ranks"
        )
    return model


def per_point_log_weight(model_trace: Any, guide_trace: Any, num_points: int) -> torch.Tensor:
    """Return the ``(num_points,)`` float64 sum of the data-plate sites' log-densities in nats.

    The model's sites (observed and per-point latent) count with a plus sign, the guide's
    per-point latents (``guide_trace``, may be None) with a minus sign; sites outside the
    ``data`` plate (global latents, drawn from the guide or a posterior) are not weighted.
    """
    import torch

    from ..evaluation.likelihood import site_log_prob

    total = torch.zeros(num_points, dtype=torch.float64)
    for tr, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        if tr is None:
            continue
        for site in tr.nodes.values():
            if site["type"] != "sample" or (sign < 0 and site["is_observed"]):
                continue
            frames = [f for f in site["cond_indep_stack"] if f.name == DATA_PLATE]
            if not frames:
                continue
            lp = site_log_prob(site["fn"], site["value"])
            lp = lp.reshape((1,) * max(0, -frames[0].dim - lp.dim()) + tuple(lp.shape))
            lp = lp.movedim(lp.dim() + frames[0].dim, 0).reshape(num_points, -1).sum(-1)
            total = total + sign * lp.double()
    return total


def predictive_log_likelihood(
    model: Any, x: torch.Tensor, num_samples: int = 1000, progress: bool = False
) -> torch.Tensor:
    """Return the ``(N,)`` held-out log-likelihoods of ``x`` in nats (float64, see the module docstring).

    One guide draw at a time over all of ``x`` (a program need not broadcast over draws).
    """
    import pyro.poutine as poutine
    import torch
    from tqdm.auto import tqdm

    def one_draw() -> torch.Tensor:
        gtr = poutine.trace(model.guide).get_trace(x)
        mtr = poutine.trace(poutine.replay(model.model, trace=gtr)).get_trace(x)
        return per_point_log_weight(mtr, gtr, int(x.shape[0]))

    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            lw = torch.stack(
                [one_draw() for _ in tqdm(range(num_samples), disable=not progress, desc="log p(x)")]
            )
    finally:
        model.train(was)
    return torch.logsumexp(lw, 0) - math.log(lw.shape[0])


def evaluate_user_model(model: Any, data: Any, cfg: UserConfig, seed: int = 0) -> dict:
    """Return the held-out scores of a trained program (nats per test point).

    ``test_log_likelihood`` (:func:`predictive_log_likelihood` with ``cfg.eval_samples`` draws),
    ``test_elbo`` and ``train_elbo`` (single-sample ELBOs averaged over 10 passes),
    ``test_bits_per_dim`` and ``likelihood_kind`` (``"importance"``).
    """
    import pyro
    import torch

    from ..inference.svi import elbo_per_point

    with torch.random.fork_rng():
        pyro.set_rng_seed(seed)
        ll = float(predictive_log_likelihood(model, data.test, cfg.eval_samples).mean())
        with torch.no_grad():
            test_elbo = sum(elbo_per_point(model.model, model.guide, data.test) for _ in range(10)) / 10
            train_elbo = sum(elbo_per_point(model.model, model.guide, data.train) for _ in range(10)) / 10
    return {
        "test_log_likelihood": ll,
        "test_bits_per_dim": -ll / (data.dim * math.log(2)),
        "test_elbo": test_elbo,
        "train_elbo": train_elbo,
        "k": cfg.eval_samples,
        "likelihood_kind": "importance",
        "guide": model.guide_name,
    }


def load_user_model(run_dir: Any, cfg: UserConfig, data: Any) -> Any:
    """Return the trained program of ``run_dir``: rebuilt on the run's own data, weights restored."""
    from ..data import load_data
    from ..inference.checkpoint import load_checkpoint, restore_weights

    config = json.loads((Path(run_dir) / "config.json").read_text())
    run, train = config.get("run", {}), config.get("train", {})
    binarize = None if run.get("binarize", "none") == "none" else run["binarize"]
    real = load_data(run.get("data", "digits"), binarize=binarize, seed=train.get("seed") or 0)
    model = build_user_model(real, cfg)
    ckpt = Path(run_dir) / "checkpoint.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{run_dir} holds no checkpoint.pt: the run was never trained")
    restore_weights(model, load_checkpoint(ckpt), ckpt)
    return model


USER_FAMILY = ModelFamily(
    name="user",
    summary="your own probabilistic program: --model FILE.py:NAME (model/guide, AutoNormal without a guide)",
    build=build_user_model,
    config=UserConfig,
    trainer="svi",
    default_estimator="reparam",
    trainer_settings=("estimator", "num_particles", "eval_particles"),
    defaults={"binarize": "none", "batch_size": 256, "lr": 1e-2},
    budget=lambda data: {"steps": 2000},
    evaluate=evaluate_user_model,
    load=load_user_model,
    likelihood="estimate",
    role="user program",
    sample_observations=True,
)


def ensure_registered() -> ModelFamily:
    """Register the user family unless an entry point did already; return the registered family."""
    registered = families().get("user")
    if registered is not None:
        return registered
    return register(USER_FAMILY)
