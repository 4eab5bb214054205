"""The label-aware VAE families: ``pyro-gen fit cvae`` (class-conditional) and ``pyro-gen fit m2``
(semi-supervised, Kingma et al. 2014).

Both need a labelled data set (digits, MNIST). Their ``prepare`` hook appends the label as a
last column of every data point (:func:`~pyro_gen.models.conditional.with_labels`; for M2
``-1`` marks an unlabelled point), so the engine's one tensor per minibatch carries it; a
batch transform such as dynamic binarization acts on the pixels only. M2 keeps ``--labels``
training labels, balanced over the classes and chosen with the run's seed, and either repeats
each labelled point so labelled rows make up about ``--labelled-share`` of the training tensor
(weighted by one over the repeats: the objective is unchanged, every minibatch holds some) or,
with ``--labelled-batch B``, trains on the unlabelled points and appends B labelled rows
(drawn without replacement, all of them when B equals ``--labels``) to every minibatch
(balanced minibatches). Its test set is unlabelled: the evaluation reports log p(x)
(importance sampling over y and z) and the test accuracy of q(y | x); ``--holdout H`` puts
the last H training images (with their labels) in the test set's place, to choose settings
without the test set.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..config import parse_widths, require_positive, setting
from ..registry import ModelFamily

ACTIVATIONS = ("relu", "tanh", "softplus", "elu")
ARCHS = ("mlp", "conv")
CONDITIONAL_BUDGETS = {"smoke": {"steps": 3}, "quick": {"epochs": 20}, "full": {"epochs": 150}}
#: importance samples per test point of the families' own evaluation
EVAL_K = 5000
#: M2's share of labelled rows in the training tensor when --labelled-share is not given
DEFAULT_LABELLED_SHARE = 0.1


@dataclass
class CVAEConfig:
    """Settings of the class-conditional VAE."""

    latent_dim: int = setting(16, "latent dimensions")
    hidden: str = setting("256", "encoder widths, comma-separated (decoder mirrors)")
    activation: str = setting("relu", "hidden activation", choices=ACTIVATIONS)
    likelihood: str = setting("bernoulli", "observation model", choices=("bernoulli", "gaussian"))
    gaussian_scale: float = setting(0.1, "std of the Gaussian likelihood")
    arch: str = setting("mlp", "networks: mlp, or conv (stride-2 convolutions; images only)", choices=ARCHS)
    conv_channels: str = setting("32,64", "with --arch conv: feature maps of each convolution")

    def __post_init__(self) -> None:
        parse_widths(self.hidden, "hidden")
        parse_widths(self.conv_channels, "conv_channels")
        require_positive(self, "latent_dim")
        if not self.gaussian_scale > 0:
            raise ValueError(f"--gaussian-scale must be positive, got {self.gaussian_scale}")


@dataclass
class M2Config(CVAEConfig):
    """Settings of the semi-supervised M2 model (defaults: the paper's MNIST network)."""

    latent_dim: int = setting(50, "latent dimensions")
    hidden: str = setting("500", "widths of the classifier, encoder and (mirrored) decoder")
    activation: str = setting("softplus", "hidden activation", choices=ACTIVATIONS)
    labels: int = setting(100, "labelled training points, balanced over the classes (chosen with --seed)")
    alpha: float = setting(
        0.1, "classifier weight as a fraction of N: alpha N on the mean log q(y|x) of labelled points"
    )
    labelled_share: float | None = setting(
        None,
        "labelled points are repeated to make up about this share of each epoch (objective "
        f"unchanged; default {DEFAULT_LABELLED_SHARE}; not with --labelled-batch)",
    )
    labelled_batch: int = setting(
        0,
        "balanced minibatches: labelled rows added to every step's --batch-size unlabelled rows, "
        "weighted --labels / B (0: repeat the labelled rows instead, see --labelled-share)",
    )
    labelled_elbo_weight: float = setting(
        1.0,
        "weight G of the labelled points' L(x, y) + log p(y) (1: the paper's objective; about "
        "N_u / N_l weighs a labelled row like an unlabelled one)",
    )
    holdout: int = setting(
        0,
        "evaluate on the last H training images (labels kept, not trained on) instead of the "
        "test set, to choose settings without it",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "labels")
        if not self.alpha >= 0:
            raise ValueError(f"--alpha must be non-negative, got {self.alpha}")
        if self.labelled_share is not None and not 0 < self.labelled_share < 1:
            raise ValueError(f"--labelled-share must be in (0, 1), got {self.labelled_share}")
        if self.labelled_batch < 0 or self.holdout < 0:
            raise ValueError(
                "--labelled-batch and --holdout must be non-negative, got "
                f"{self.labelled_batch}, {self.holdout}"
            )
        if self.labelled_batch and self.labelled_share is not None:
            raise ValueError("give --labelled-share (repeated labelled rows) or --labelled-batch, not both")
        if self.labelled_batch > self.labels:
            raise ValueError(
                f"--labelled-batch {self.labelled_batch} exceeds the {self.labels} labelled points (--labels)"
            )
        if not (self.labelled_elbo_weight > 0 and math.isfinite(self.labelled_elbo_weight)):
            raise ValueError(f"--labelled-elbo-weight must be positive, got {self.labelled_elbo_weight}")


# --------------------------------------------------------------------------- data
def _require_labels(data, family: str) -> None:
    if data.train_labels is None or data.test_labels is None:
        raise ValueError(
            f"the {family} family needs a labelled data set (digits, mnist); {data.name} has no labels"
        )
    if len(data.shape) != 2 and len(data.shape) != 1:
        raise ValueError(f"the {family} family needs flat or image data, got points of shape {data.shape}")


def _pixels_only(transform, dim: int):
    """Return ``transform`` applied to the first ``dim`` columns only (the label column kept)."""
    if transform is None:
        return None

    def apply(batch):
        import torch

        return torch.cat([transform(batch[:, :dim]), batch[:, dim:]], dim=1)

    return apply


def balanced_labelled_indices(labels, num: int, seed: int = 0):
    """Return ``num`` sorted indices into ``labels`` ``(N,)``, balanced over the classes (seeded).

    Each class gets ``num // C`` points and ``num % C`` classes (chosen with ``seed``) one
    more. ``ValueError`` when ``num`` is below the number of classes or a class has too few points.
    """
    import torch

    labels = torch.as_tensor(labels).long()
    classes = torch.unique(labels)
    c = int(classes.numel())
    if num < c or num > labels.numel():
        raise ValueError(
            f"--labels must be between the number of classes ({c}) and {labels.numel()}, got {num}"
        )
    g = torch.Generator().manual_seed(seed)
    extra = set(torch.randperm(c, generator=g)[: num % c].tolist())
    chosen = []
    for i, k in enumerate(classes.tolist()):
        pool = torch.nonzero(labels == k).flatten()
        want = num // c + (1 if i in extra else 0)
        if pool.numel() < want:
            raise ValueError(
                f"class {k} has {pool.numel()} training points, fewer than the {want} --labels asks"
            )
        chosen.append(pool[torch.randperm(pool.numel(), generator=g)[:want]])
    return torch.sort(torch.cat(chosen)).values


def prepare_cvae(data, cfg: CVAEConfig, spec: str = "", seed: int = 0):
    """Return ``data`` with each point's label appended as its last column (train and test)."""
    from ..models.conditional import with_labels

    _require_labels(data, "cvae")
    return dataclasses.replace(
        data,
        train=with_labels(data.train, data.train_labels),
        test=with_labels(data.test, data.test_labels),
        batch_transform=_pixels_only(data.batch_transform, data.dim),
    )


def _with_labelled_rows(transform, labelled, num: int, dim: int):
    """Return a batch transform that appends ``num`` rows of ``labelled`` (drawn without replacement
    with the global torch RNG; all of them, in order, when ``num`` is their number) to each
    minibatch, then applies ``transform`` to the pixels of every row."""
    pixels = _pixels_only(transform, dim)

    def apply(batch):
        import torch

        rows = labelled if num >= labelled.shape[0] else labelled[torch.randperm(labelled.shape[0])[:num]]
        both = torch.cat([batch, rows.to(device=batch.device, dtype=batch.dtype)])
        return pixels(both) if pixels is not None else both

    return apply


def _hold_out(data, num: int, seed: int):
    """Return ``data`` whose test split is its last ``num`` training images (labels kept; put through
    the batch transform once with ``seed``, as the test set is binarized once) and whose training
    split is the rest."""
    import torch

    n = int(data.train.shape[0])
    if num >= n:
        raise ValueError(f"--holdout {num} leaves no training images (the training set has {n})")
    held = data.train[n - num :]
    if data.batch_transform is not None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            held = data.batch_transform(held)
    return dataclasses.replace(
        data,
        train=data.train[: n - num],
        train_labels=data.train_labels[: n - num],
        test=held,
        test_labels=data.train_labels[n - num :],
    )


def prepare_m2(data, cfg: M2Config, spec: str = "", seed: int = 0):
    """Return the M2 training split: ``--labels`` balanced labelled points (label column), the rest
    ``-1``; the labelled rows repeated to about ``--labelled-share`` or, with ``--labelled-batch``,
    kept apart and appended to every minibatch by the batch transform; the test set (or, with
    ``--holdout``, the held-out training images) unlabelled.

    ``info["m2"]`` records ``labelled_indices``, ``repeat`` (r), ``num_train`` (N, labelled
    included), ``labelled_batch`` and ``holdout``.
    """
    import torch

    from ..models.conditional import UNLABELLED, with_labels

    _require_labels(data, "m2")
    if cfg.holdout:
        data = _hold_out(data, cfg.holdout, seed)
    n = int(data.train.shape[0])
    idx = balanced_labelled_indices(data.train_labels, cfg.labels, seed)
    column = torch.full((n,), UNLABELLED, dtype=torch.long)
    column[idx] = data.train_labels[idx].long()
    unlabelled = n - idx.numel()
    train = with_labels(data.train, column)
    repeat = 1
    transform = _pixels_only(data.batch_transform, data.dim)
    if cfg.labelled_batch:
        if not unlabelled:
            raise ValueError("--labelled-batch needs unlabelled training points; every point is labelled")
        keep = torch.ones(n, dtype=torch.bool)
        keep[idx] = False
        transform = _with_labelled_rows(data.batch_transform, train[idx], cfg.labelled_batch, data.dim)
        train = train[keep]
    else:
        share = DEFAULT_LABELLED_SHARE if cfg.labelled_share is None else cfg.labelled_share
        if unlabelled:
            repeat = max(1, round(share * unlabelled / ((1 - share) * idx.numel())))
        if repeat > 1:
            train = torch.cat([train, train[idx].repeat(repeat - 1, 1)])
    test = with_labels(data.test, torch.full((data.test.shape[0],), UNLABELLED, dtype=torch.long))
    split = {
        "labelled_indices": idx.tolist(),
        "repeat": repeat,
        "num_train": n,
        "labelled_batch": cfg.labelled_batch,
        "holdout": cfg.holdout,
    }
    return dataclasses.replace(
        data, train=train, test=test, batch_transform=transform, info={**data.info, "m2": split}
    )


# --------------------------------------------------------------------------- build
def _pixels(data) -> int:
    d = math.prod(data.shape)
    if data.dim != d + 1:
        raise ValueError(
            f"expected data prepared with a label column ({d + 1} values per point), got {data.dim}"
        )
    return d


def _num_classes(data) -> int:
    return int(data.train_labels.max()) + 1 if data.train_labels is not None else 10


def _common(data, cfg: CVAEConfig) -> dict:
    if cfg.arch == "conv" and len(data.shape) != 2:
        raise ValueError(
            f"--arch conv needs image data (points of shape (H, W)); {data.name} has {data.shape}"
        )
    return dict(
        latent_dim=cfg.latent_dim,
        hidden=parse_widths(cfg.hidden),
        activation=cfg.activation,
        likelihood=cfg.likelihood,
        gaussian_scale=cfg.gaussian_scale,
        arch=cfg.arch,
        image_shape=tuple(data.shape) if cfg.arch == "conv" else None,
        conv_channels=parse_widths(cfg.conv_channels, "conv_channels"),
    )


def build_cvae(data, cfg: CVAEConfig):
    """Return an untrained :class:`~pyro_gen.models.conditional.ConditionalVAE` for prepared ``data``."""
    from ..models.conditional import ConditionalVAE

    d = _pixels(data)
    model = ConditionalVAE(d, _num_classes(data), **_common(data, cfg))
    model.init_output_bias(data.train[:, :d].mean(0))
    return model


def build_m2(data, cfg: M2Config):
    """Return an untrained :class:`~pyro_gen.models.conditional.M2` for prepared ``data``.

    Each labelled row weighs ``1 / r`` (with ``--labelled-batch``: the labelled minibatch is
    scaled to the ``N_l`` labelled points) and its classifier term ``alpha N / N_l`` (N training
    points, ``N_l = --labels``), the paper's ``alpha`` times the mean over labelled points; the
    labelled points' ``L(x, y) + log p(y)`` is multiplied by ``--labelled-elbo-weight``.
    """
    from ..models.conditional import M2

    d = _pixels(data)
    split = data.info.get("m2", {})
    repeat, num_train = int(split.get("repeat", 1)), int(split.get("num_train", data.train.shape[0]))
    model = M2(
        d,
        _num_classes(data),
        **_common(data, cfg),
        alpha_weight=cfg.alpha * num_train / cfg.labels,
        labelled_weight=1.0 / repeat,
        labelled_elbo_weight=cfg.labelled_elbo_weight,
        num_labelled=cfg.labels if cfg.labelled_batch else None,
    )
    model.init_output_bias(data.train[:, :d].mean(0))
    return model


def m2_guide(model, cfg: M2Config):
    """Return the M2 guide with y marked for parallel enumeration (``config_enumerate``)."""
    from pyro.infer import config_enumerate

    return config_enumerate(model.guide, default="parallel")


# --------------------------------------------------------------------------- evaluate
def _likelihood_metrics(model, x, d: int, seed: int, k: int) -> dict:
    from ..evaluation import evaluate

    ev = evaluate(model, x, k=k, seed=seed)
    return {
        "test_log_likelihood": ev.log_likelihood,
        "test_bits_per_dim": -ev.log_likelihood / (d * math.log(2)),
        "k": k,
        "likelihood_kind": ev.kind,
    }


def evaluate_cvae(model, data, cfg: CVAEConfig, seed: int = 0, k: int = EVAL_K) -> dict:
    """Return the test ELBO and the importance-sampled log p(x | y) (nats per point, bits/dim over pixels)."""
    import torch

    from ..inference.svi import elbo_per_point

    d = data.test.shape[1] - 1
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        out = {"test_elbo": elbo_per_point(model.model, model.guide, data.test)}
    out.update(_likelihood_metrics(model, data.test, d, seed, k))
    return out


def evaluate_m2(model, data, cfg: M2Config, seed: int = 0, k: int = EVAL_K) -> dict:
    """Return the test accuracy of q(y | x) (0-1), the test ELBO (y summed exactly) and the
    importance-sampled log p(x) (over y and z), in nats per point and bits/dim over pixels."""
    import torch
    from pyro.infer import TraceEnum_ELBO

    from ..inference.svi import elbo_per_point

    d = data.test.shape[1] - 1
    out = {"test_accuracy": model.accuracy(data.test[:, :d], data.test_labels)}
    if cfg.holdout:
        out["evaluated_on"] = f"holdout: the last {cfg.holdout} training images"
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        elbo = TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False)
        out["test_elbo"] = elbo_per_point(model.model, m2_guide(model, cfg), data.test, elbo=elbo)
    out.update(_likelihood_metrics(model, data.test, d, seed, k))
    return out


CVAE_FAMILY = ModelFamily(
    name="cvae",
    summary="Class-conditional VAE: encoder and decoder see the one-hot label; sample a class",
    build=build_cvae,
    config=CVAEConfig,
    trainer="svi",
    default_estimator="auto",
    prepare=prepare_cvae,
    evaluate=evaluate_cvae,
    likelihood="estimate",
    role="latent variable (conditional)",
    sample_observations=True,
    budgets=CONDITIONAL_BUDGETS,
)

M2_FAMILY = ModelFamily(
    name="m2",
    summary="Semi-supervised VAE M2 (Kingma et al. 2014): y enumerated where unlabelled; test accuracy",
    build=build_m2,
    config=M2Config,
    trainer="svi",
    trainer_settings=("num_particles", "eval_particles"),
    default_estimator="enum",
    defaults={"lr": 3e-4, "batch_size": 100},
    prepare=prepare_m2,
    guide=m2_guide,
    evaluate=evaluate_m2,
    likelihood="estimate",
    role="latent variable (semi-supervised)",
    sample_observations=True,
    budgets=CONDITIONAL_BUDGETS,
)
