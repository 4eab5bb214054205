"""Settings as dataclasses: the single spelling of every training setting, and the CLI flags made from them.

:class:`TrainConfig` holds what the engine needs (budget, batches, optimizer, schedule,
device, checkpoints); :class:`RunConfig` what a run folder needs around it (data, output,
evaluation). Each trainer and each model family adds its own small dataclass
(:class:`SVIConfig`, :class:`AdversarialConfig`, a family's ``config``). Command-line flags
are generated from the fields (:func:`add_arguments`), ``config.json`` is these objects
serialized, and :func:`from_dict` reads them back with the same validation.

This module imports neither torch nor Pyro, so the command line starts fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
SCHEDULES = ("constant", "cosine", "exponential", "linear", "stages")


def parse_stages(spec: str) -> list[tuple[float, float]]:
    """Return the stages of ``"EPOCHS:FACTOR,..."`` as ``[(epochs, factor), ...]``.

    Each stage lasts ``EPOCHS`` passes over the training data (a positive number) at the
    learning rate ``lr * FACTOR`` (a positive number); ``ValueError`` naming the bad entry.
    """
    stages = []
    for part in (p.strip() for p in str(spec).split(",")):
        epochs, sep, factor = part.partition(":")
        try:
            stage = (float(epochs), float(factor))
        except ValueError:
            stage = None
        if not sep or stage is None or not all(v > 0 and math.isfinite(v) for v in stage):
            raise ValueError(
                f"--lr-stages must be EPOCHS:FACTOR pairs of positive numbers, comma-separated; got {part!r}"
            )
        stages.append(stage)
    return stages


def iwae_stages(num_stages: int = 8) -> str:
    """Return the ``lr_stages`` of Burda et al. (2016): stage i runs 3^(i-1) epochs at
    ``lr * 10^(-(i-1)/7)`` (factors to four significant digits), as an ``"EPOCHS:FACTOR,..."`` string."""
    return ",".join(f"{3**i}:{10 ** (-i / 7):.4g}" for i in range(num_stages))


def setting(default: Any, help: str, *, choices: tuple | list | None = None, flag: str | None = None) -> Any:
    """Return a dataclass field with its command-line help (and choices, or a flag name of its own)."""
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = list(choices)
    if flag is not None:
        meta["flag"] = flag
    if isinstance(default, list | dict | set):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """How the engine trains: one spelling of every gradient-training setting.

    Give ``epochs`` (passes over the training data) or ``steps`` (optimizer updates), not
    both; with neither, the model family's budget applies (10 epochs for a family without
    one). ``lr`` is in the optimizer's units; ``warmup_steps`` ramps it linearly from
    ``lr / warmup_steps``; ``clip_norm`` clips the global gradient L2 norm. ``validation``
    holds out the last N training rows for the evaluations during training; ``early_stopping``
    (evaluations without improvement) stops there and keeps the best state.
    """

    epochs: float | None = setting(None, "passes over the training data")
    steps: int | None = setting(None, "optimizer steps (generator steps for a GAN)")
    batch_size: int = setting(128, "minibatch rows per step (per process under torchrun)")
    lr: float = setting(1e-3, "learning rate")
    optimizer: str = setting("adam", "optimizer", choices=OPTIMIZERS)
    lr_schedule: str = setting("constant", "learning-rate schedule after warm-up", choices=SCHEDULES)
    warmup_steps: int = setting(0, "linear learning-rate warm-up steps")
    lr_gamma: float = setting(0.999, "decay per step of the exponential schedule")
    lr_stages: str | None = setting(
        None,
        "stages of the 'stages' schedule: EPOCHS:FACTOR,... (each stage runs EPOCHS passes at "
        "lr*FACTOR; the last factor holds after the last stage)",
    )
    adam_betas: str | None = setting(
        None, "Adam/AdamW betas as B1,B2 (default: the optimizer's, 0.9,0.999; a GAN takes --beta1/--beta2)"
    )
    adam_eps: float | None = setting(None, "Adam/AdamW epsilon (default: the optimizer's, 1e-8)")
    clip_norm: float | None = setting(None, "clip the gradient's global L2 norm to this value")
    divergence_factor: float = setting(
        1000.0,
        "stop when a loss lies this many running scales from its running median "
        "(scale: |median| + spread + 1 over the last 100 steps; 0 turns it off)",
    )
    seed: int | None = setting(0, "seed of every random stream (data order, initialization, sampling)")
    device: str | None = setting(None, "cpu | cuda | cuda:N | auto (default: where the model is)")
    threads: int | None = setting(
        None,
        "torch threads while training and for the run's evaluation (default: the family's choice, "
        "else one for small models while training)",
    )
    log_every: int | None = setting(None, "steps between history rows (default: one epoch)")
    eval_every: int | None = setting(None, "steps between held-out evaluations (default: log_every)")
    validation: int | None = setting(
        None,
        "hold out the last N training rows as the set evaluated during training "
        "(the test set is then used only by the final evaluation)",
    )
    early_stopping: int | None = setting(
        None,
        "stop when the held-out metric has not improved for this many evaluations and keep "
        "the best state (needs --validation)",
    )
    checkpoint_every: int | None = setting(
        None, "steps between checkpoints (default: one epoch in a run folder)"
    )
    sync_every: int | None = setting(None, "steps between reading the loss back from an accelerator")
    progress: bool | None = setting(
        True, "hide the progress bars (shown by default; None: only on a terminal)", flag="--no-progress"
    )

    def __post_init__(self) -> None:
        check_config(self)
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give at most one of epochs and steps")
        positive = ("epochs", "steps", "batch_size", "lr", "log_every", "eval_every", "checkpoint_every")
        positive = (*positive, "validation", "early_stopping")
        for name in (*positive, "sync_every", "threads", "clip_norm"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be positive, got {v}")
        if self.early_stopping is not None and self.validation is None:
            raise ValueError(
                "--early-stopping needs a held-out set during training: give --validation N "
                "(the test set is not used to choose the model)"
            )
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not (self.divergence_factor >= 0 and math.isfinite(self.divergence_factor)):
            raise ValueError(f"divergence_factor must be >= 0 (0: off), got {self.divergence_factor}")
        if not 0.0 < self.lr_gamma <= 1.0:
            raise ValueError(f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if (self.lr_schedule == "stages") != (self.lr_stages is not None):
            raise ValueError(
                f"--lr-stages goes with --lr-schedule stages (got lr_schedule {self.lr_schedule!r}, "
                f"lr_stages {self.lr_stages!r})"
            )
        if self.lr_stages is not None:
            parse_stages(self.lr_stages)
        if self.adam_betas is not None:
            self.betas()
        if self.adam_eps is not None and not (self.adam_eps > 0 and math.isfinite(self.adam_eps)):
            raise ValueError(f"adam_eps must be positive, got {self.adam_eps}")

    def betas(self) -> tuple[float, float] | None:
        """Return ``adam_betas`` as two floats in [0, 1) (None when unset); ``ValueError`` when malformed."""
        if self.adam_betas is None:
            return None
        parts = [p.strip() for p in str(self.adam_betas).split(",")]
        try:
            betas = tuple(float(p) for p in parts)
        except ValueError:
            betas = ()
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"--adam-betas must be two numbers in [0, 1) as B1,B2, got {self.adam_betas!r}")
        return betas  # type: ignore[return-value]


KL_SCHEDULES = ("constant", "linear", "cyclical")
#: the estimators a KL weight or free bits is exact for (reparameterized single-sample ELBOs)
REMEDY_ESTIMATORS = ("reparam", "auto", "jit", "analytic-kl")


@dataclass
class SVIConfig:
    """Settings of the SVI objective: the ELBO estimator, its particles, and posterior-collapse remedies.

    The remedies (all off by default) act on the latent sites only, never on the observed
    likelihood: ``beta`` weights log p(z) - log q(z) of every latent site; ``kl_schedule``
    moves that weight from 0 to ``beta`` (``linear`` over ``kl_warmup_steps`` updates, or
    ``cyclical``: Fu et al. 2019, ``kl_cycles`` cycles over the training steps, each ramping
    for its first ``kl_ramp`` fraction); ``free_bits`` (Kingma et al. 2016) floors the KL of
    each latent dimension, averaged over the minibatch, at that many nats;
    ``aggressive_encoder`` (He et al. 2019) takes up to ``aggressive_inner_steps`` guide-only
    updates before each model update while the aggressive phase lasts.
    """

    estimator: str | None = setting(None, "ELBO estimator (see `pyro-gen list`; default: the family's)")
    num_particles: int = setting(1, "samples per data point in the training ELBO")
    eval_particles: int = setting(1, "samples per data point in the held-out ELBO")
    beta: float = setting(
        1.0, "weight of the KL part (log p(z) - log q(z) of every latent site; reached after annealing)"
    )
    kl_schedule: str | None = setting(
        None,
        "KL-weight schedule: constant, linear (0 to --beta over --kl-warmup-steps) or cyclical "
        "(Fu et al. 2019; default: linear with --kl-warmup-steps, else constant)",
        choices=KL_SCHEDULES,
    )
    kl_warmup_steps: int = setting(0, "updates of the linear KL warm-up from weight 0 to --beta")
    kl_cycles: int = setting(4, "cycles of the cyclical KL schedule over the training steps")
    kl_ramp: float = setting(0.5, "fraction of each cyclical KL cycle spent ramping from 0 to --beta")
    free_bits: float | None = setting(
        None,
        "free bits (Kingma et al. 2016): floor in nats of the minibatch-average KL of every latent "
        "dimension, sum_d max(lambda, KL_d)",
    )
    aggressive_encoder: bool = setting(
        False,
        "aggressive encoder updates (He et al. 2019): guide-only updates before each model update "
        "until the mean loss of a window of 15 stops falling (at most --aggressive-inner-steps), "
        "while the mutual information I(x; z), measured every epoch, keeps rising",
    )
    aggressive_inner_steps: int = setting(100, "most guide-only updates before one model update")
    aggressive_steps: int | None = setting(
        None, "model updates of the aggressive phase (default: until the mutual information stops rising)"
    )

    def __post_init__(self) -> None:
        check_config(self)
        for name in ("num_particles", "eval_particles", "kl_cycles", "aggressive_inner_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ValueError(f"--beta must be a finite number >= 0, got {self.beta}")
        if self.kl_warmup_steps < 0:
            raise ValueError(f"--kl-warmup-steps must be >= 0, got {self.kl_warmup_steps}")
        if not (0.0 < self.kl_ramp <= 1.0):
            raise ValueError(f"--kl-ramp must be in (0, 1], got {self.kl_ramp}")
        if self.free_bits is not None and not (self.free_bits > 0 and math.isfinite(self.free_bits)):
            raise ValueError(f"--free-bits must be a positive number of nats, got {self.free_bits}")
        if self.aggressive_steps is not None and self.aggressive_steps < 1:
            raise ValueError(f"--aggressive-steps must be a positive integer, got {self.aggressive_steps}")
        schedule = self.schedule
        if schedule == "linear" and self.kl_warmup_steps == 0:
            raise ValueError("--kl-schedule linear needs --kl-warmup-steps (a positive number of updates)")
        if schedule != "linear" and self.kl_warmup_steps > 0:
            raise ValueError(f"--kl-warmup-steps goes with --kl-schedule linear, not {schedule}")
        if self.aggressive_steps is not None and not self.aggressive_encoder:
            raise ValueError("--aggressive-steps goes with --aggressive-encoder")
        if self.weights_kl and self.estimator is not None:
            name = self.estimator.partition(":")[0]
            if name not in REMEDY_ESTIMATORS:
                raise ValueError(
                    f"--beta, --kl-schedule and --free-bits are exact only for the reparameterized "
                    f"ELBO estimators ({', '.join(REMEDY_ESTIMATORS)}), not --estimator {self.estimator}"
                )

    @property
    def schedule(self) -> str:
        """Return the KL schedule (``kl_schedule``; else linear with a warm-up, else constant)."""
        if self.kl_schedule is not None:
            return self.kl_schedule
        return "linear" if self.kl_warmup_steps > 0 else "constant"

    @property
    def weights_kl(self) -> bool:
        """Return whether the KL part of the objective differs from the plain ELBO's (weight or free bits)."""
        return self.beta != 1.0 or self.schedule != "constant" or self.free_bits is not None

    @property
    def remedies_on(self) -> bool:
        """Return whether any posterior-collapse remedy is switched on."""
        return self.weights_kl or self.aggressive_encoder


GAN_LOSSES = ("minimax", "ns", "wgan-gp", "hinge", "lsgan")


@dataclass
class AdversarialConfig:
    """Settings of the adversarial game (two players, critic steps, gradient penalty, moving average)."""

    loss: str = setting("ns", "adversarial loss (ns = non-saturating)", choices=GAN_LOSSES)
    d_steps: int | None = setting(None, "critic updates per generator update (default 5 for wgan-gp, else 1)")
    gp_weight: float = setting(10.0, "WGAN-GP gradient-penalty weight")
    lr_d: float | None = setting(None, "critic learning rate (default: --lr)")
    beta1: float = setting(0.5, "Adam beta1 of both players")
    beta2: float | None = setting(None, "Adam beta2 of both players (default 0.9 for wgan-gp, else 0.999)")
    ema: float | None = setting(None, "decay of the sampled moving average of generator weights (0: off)")

    def __post_init__(self) -> None:
        check_config(self)
        if self.d_steps is not None and self.d_steps < 1:
            raise ValueError(f"d_steps must be a positive integer, got {self.d_steps}")
        if self.gp_weight < 0:
            raise ValueError(f"gp_weight must be non-negative, got {self.gp_weight}")
        if self.lr_d is not None and not self.lr_d > 0:
            raise ValueError(f"lr_d must be positive, got {self.lr_d}")
        if self.ema is not None and not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be a decay in [0, 1), got {self.ema}")
        if self.ema == 0.0:
            self.ema = None

    @property
    def critic_steps(self) -> int:
        """Return the critic updates per generator update (5 for WGAN-GP unless set)."""
        return self.d_steps or (5 if self.loss == "wgan-gp" else 1)

    @property
    def betas(self) -> tuple[float, float]:
        """Return Adam's ``(beta1, beta2)`` for both players."""
        return (self.beta1, self.beta2 or (0.9 if self.loss == "wgan-gp" else 0.999))


TRACKERS = ("none", "tensorboard", "mlflow")


@dataclass
class RunConfig:
    """What a run folder adds around training: data, output, evaluation and resumption."""

    data: str = setting(
        "digits",
        "digits | mnist:PATH | fashion-mnist:PATH | stacked-mnist:PATH | moons | ring | grid | "
        "PATH.npy|.npz|.csv|.pt (your own rows; 20%% held out by --seed)",
    )
    out: str | None = setting(None, "run folder (default runs/<family>-<data>)")
    binarize: str = setting("dynamic", "image pixels", choices=("dynamic", "static", "none"))
    k: int = setting(5000, "importance samples for the test log-likelihood")
    eval_points: int | None = setting(None, "test points in the final evaluation: the first N (default: all)")
    resume: bool = setting(False, "continue from the run folder's checkpoint")
    overwrite: bool = setting(False, "replace the run already in the folder (its files are removed first)")
    track: str = setting(
        "none",
        "experiment tracker fed during training: tensorboard (event files in RUN/tensorboard) or "
        "mlflow (a local file store in RUN/mlruns); both work offline",
        choices=TRACKERS,
    )

    def __post_init__(self) -> None:
        check_config(self)
        if self.track not in TRACKERS:
            raise ValueError(f"track must be one of {', '.join(TRACKERS)}, got {self.track!r}")
        if self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k}")
        if self.eval_points is not None and self.eval_points < 1:
            raise ValueError(f"eval_points must be a positive integer, got {self.eval_points}")


# ----------------------------------------------------------------------------------------
# dataclass <-> flags <-> dict
# ----------------------------------------------------------------------------------------


def _base_type(tp: Any) -> tuple[type, bool]:
    """Return ``(type, optional)`` for a field annotation such as ``int | None``."""
    if isinstance(tp, str):
        tp = eval(tp, {"typing": typing})  # annotations are strings under `from __future__`
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return inner[0], len(inner) < len(args)
    return tp, False


def _hints(cls: type) -> dict[str, tuple[type, bool]]:
    return {f.name: _base_type(f.type) for f in fields(cls)}


def check_config(obj: Any) -> None:
    """Raise ``ValueError`` naming the field when a setting has the wrong type or is not a choice."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        tp, optional = _base_type(f.type)
        if value is None:
            if optional:
                continue
            raise ValueError(f"{f.name} must be set")
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            setattr(obj, f.name, value)
        if tp in (int, float, str, bool) and (
            not isinstance(value, tp) or (tp is not bool and isinstance(value, bool))
        ):
            raise ValueError(f"{f.name} must be a {tp.__name__}, got {value!r}")
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ValueError(f"{f.name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def require_positive(obj: Any, *names: str) -> None:
    """Raise ``ValueError`` naming the flag when one of the integer settings ``names`` is set below 1."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")


def flag_of(f: dataclasses.Field) -> str:
    """Return the command-line flag of a field (``batch_size`` -> ``--batch-size``)."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    defaults: dict[str, Any] | None = None,
    *,
    dest_prefix: str = "",
    only: list[str] | None = None,
) -> list[str]:
    """Add one flag per field of the dataclass ``cls`` to ``parser``; return the destinations.

    ``defaults`` replaces the dataclass defaults (a family's own budget or learning rate).
    Booleans become switches (``--resume``; a field defaulting to True gets its ``--no-...``
    flag). Every flag's default is ``None`` so that :func:`explicit` can tell which ones a
    user gave; :func:`build` fills in the defaults. ``only`` limits the flags to those fields.
    """
    defaults = defaults or {}
    dests = []
    for f in fields(cls):
        if only is not None and f.name not in only:
            continue
        tp, _ = _hints(cls)[f.name]
        dest = dest_prefix + f.name
        default = defaults.get(f.name, f.default if f.default is not MISSING else None)
        help_text = f.metadata.get("help", "")
        if tp is bool:
            on = not bool(f.default is True)
            parser.add_argument(
                flag_of(f), dest=dest, action="store_const", const=on, default=None, help=help_text
            )
        else:
            shown = "" if default is None else f" (default: {default})"
            parser.add_argument(
                flag_of(f),
                dest=dest,
                type=tp,
                default=None,
                metavar=None if f.metadata.get("choices") else f.name.upper(),
                choices=f.metadata.get("choices"),
                help=help_text + shown,
            )
        dests.append(dest)
    return dests


def explicit(namespace: argparse.Namespace, cls: type, *, dest_prefix: str = "") -> dict[str, Any]:
    """Return the fields of ``cls`` that were given on the command line (not left at their default)."""
    out = {}
    for f in fields(cls):
        v = getattr(namespace, dest_prefix + f.name, None)
        if v is not None:
            out[f.name] = v
    return out


def build(cls: type, *layers: dict[str, Any]) -> Any:
    """Return ``cls(**merged)``: later dicts win; keys that are not fields raise ``ValueError``."""
    names = {f.name for f in fields(cls)}
    merged: dict[str, Any] = {}
    for layer in layers:
        unknown = sorted(set(layer) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} setting(s): {', '.join(unknown)}")
        merged.update(layer)
    return cls(**merged)


def from_dict(cls: type, values: dict[str, Any] | None) -> Any:
    """Return ``cls`` built from a dict read back from ``config.json`` (unknown keys refused)."""
    return build(cls, dict(values or {}))


def to_dict(obj: Any) -> dict[str, Any]:
    """Return the dataclass ``obj`` as a JSON-ready dict."""
    return dataclasses.asdict(obj)


def parse_widths(spec: str | list | tuple, name: str = "hidden") -> list[int]:
    """Return layer widths from ``"256,128"`` (or a list); ``ValueError`` naming ``name`` when invalid."""
    if isinstance(spec, list | tuple):
        parts = [str(s) for s in spec]
    else:
        parts = [s.strip() for s in str(spec).split(",") if s.strip()]
    try:
        widths = [int(s) for s in parts]
    except ValueError:
        raise ValueError(
            f"--{name.replace('_', '-')} must be comma-separated integers, got {spec!r}"
        ) from None
    if any(w <= 0 for w in widths):
        raise ValueError(f"--{name.replace('_', '-')} widths must be positive, got {spec!r}")
    return widths
