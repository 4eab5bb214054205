"""Label-aware VAEs: the class-conditional VAE and the semi-supervised M2 model (Kingma et al. 2014).

Both train on one tensor per minibatch whose last column is the label (``-1`` for an
unlabelled point of M2): ``(B, D + 1)``, the pixels first. :func:`with_labels` builds it.

Conditional VAE (:class:`ConditionalVAE`), for a class y observed with every point::

    z_n ~ N(0, I),  x_n ~ p(x | decoder(z_n, onehot(y_n)))       guide  q(z_n | x_n, y_n)

M2 (:class:`M2`): y is a latent class with a uniform prior, observed for the labelled points::

    y_n ~ Cat(1/C),  z_n ~ N(0, I),  x_n ~ p(x | decoder(z_n, onehot(y_n)))
    guide  q(y_n | x_n) q(z_n | x_n, y_n)

For an unlabelled point the guide's ``y`` is enumerated (Pyro's ``TraceEnum_ELBO`` with the
guide wrapped in ``config_enumerate``, as in Pyro's ss-vae example), so the ELBO is the
paper's ``U(x) = sum_y q(y | x) (L(x, y) + log p(y)) + H(q(y | x))`` in closed form over y.
A labelled point gives ``L(x, y) + log p(y)`` and, as in the paper's ``J^alpha``, the
classifier term ``alpha_weight * log q(y | x)``. The labelled and the unlabelled points of a
minibatch are scored in plates of their own (``"labelled"`` and ``"data"``), each scaled by
the minibatch's ``N / B`` so the minibatch objective is an unbiased estimate of the full-data
one; the labelled rows are further weighted by ``labelled_weight`` (``1 / r`` when each
labelled point is repeated ``r`` times in the training tensor, so every minibatch holds some
without changing the objective). With ``num_labelled`` set (balanced minibatches: every step
draws its own minibatch of the ``num_labelled`` labelled points besides the unlabelled rows
the engine draws), the labelled rows are scaled by ``num_labelled / B_l`` and the unlabelled
ones by ``N / B_u`` instead (``N`` unlabelled training rows). ``labelled_elbo_weight`` ``G``
multiplies the labelled points' ``L(x, y) + log p(y)`` (not the classifier term), so the
objective is::

    J = G sum_labelled (L(x, y) + log p(y)) + sum_unlabelled U(x) + alpha_weight sum_labelled log q(y | x)

with ``G = 1`` the paper's. Unlabelled data alone (the test set) lie entirely in the
``"data"`` plate, so the importance-sampled evaluation of log p(x) applies unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from ..data.checks import check_unit_interval
from .base import current_minibatch, data_plate
from .nets import ConvDecoder, ConvEncoder, GaussianEncoder, cat_features, conv_grid, mlp, set_output_bias

LIKELIHOODS = ("bernoulli", "gaussian")
ARCHS = ("mlp", "conv")
UNLABELLED = -1


def with_labels(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return ``(N, D + 1)``: the rows of ``x`` with their label (``-1``: unlabelled) as the last column."""
    if x.dim() != 2 or labels.shape != (x.shape[0],):
        raise ValueError(f"need x (N, D) and labels (N,), got {tuple(x.shape)} and {tuple(labels.shape)}")
    return torch.cat([x, labels.to(x.dtype).unsqueeze(-1)], dim=-1)


def split_labels(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x, labels)`` of a batch made by :func:`with_labels`: ``(B, D)`` and ``(B,)`` int64."""
    return batch[..., :-1], batch[..., -1].round().long()


def _minibatch_scale(batch: torch.Tensor) -> float:
    """Return ``N / B`` inside a training step over ``B`` of ``N`` rows, else 1."""
    current = current_minibatch()
    if current is None or len(current[1]) != batch.shape[0]:
        return 1.0
    return current[0] / batch.shape[0]


def _balanced_scales(num_labelled: int, num_lab: int, num_unlab: int) -> tuple[float, float]:
    """Return ``(labelled, unlabelled)`` scales of a balanced minibatch inside a training step over
    ``num_unlab`` of ``N`` unlabelled rows (``num_labelled / num_lab`` and ``N / num_unlab``), else 1, 1."""
    current = current_minibatch()
    if current is None or len(current[1]) != num_unlab:
        return 1.0, 1.0
    return num_labelled / max(num_lab, 1), current[0] / max(num_unlab, 1)


class _LabelledVAE(nn.Module):
    """The networks and checks shared by :class:`ConditionalVAE` and :class:`M2`."""

    allow_unlabelled = False

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        latent_dim: int,
        hidden: Sequence[int],
        activation: str,
        likelihood: str,
        gaussian_scale: float,
        arch: str,
        image_shape: Sequence[int] | None,
        conv_channels: Sequence[int],
    ):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
        if input_dim <= 0 or latent_dim <= 0 or num_classes < 2:
            raise ValueError(
                f"need positive input_dim and latent_dim and at least 2 classes, got "
                f"{input_dim}, {latent_dim}, {num_classes}"
            )
        if gaussian_scale <= 0:
            raise ValueError(f"gaussian_scale must be positive, got {gaussian_scale}")
        if arch == "conv":
            if image_shape is None or len(tuple(image_shape)) != 2:
                raise ValueError(f"--arch conv needs image data (points of shape (H, W)), got {image_shape}")
            conv_grid(image_shape, len(conv_channels))
        self.input_dim, self.num_classes, self.latent_dim = int(input_dim), int(num_classes), int(latent_dim)
        self.likelihood, self.arch = likelihood, arch
        self.config = dict(
            input_dim=input_dim,
            num_classes=num_classes,
            latent_dim=latent_dim,
            hidden=list(hidden),
            activation=activation,
            likelihood=likelihood,
            gaussian_scale=gaussian_scale,
            arch=arch,
            image_shape=None if image_shape is None else list(image_shape),
            conv_channels=list(conv_channels),
        )
        c, dec_hidden = self.num_classes, list(reversed(list(hidden)))
        if arch == "conv":
            self.encoder = ConvEncoder(
                image_shape, latent_dim, conv_channels, hidden, activation, context_dim=c
            )
            self.decoder = ConvDecoder(latent_dim + c, image_shape, conv_channels, dec_hidden, activation)
        else:
            self.encoder = GaussianEncoder(input_dim + c, list(hidden), latent_dim, activation)
            self.decoder = mlp(latent_dim + c, dec_hidden, input_dim, activation)
        self.register_buffer("prior_loc", torch.zeros(latent_dim))
        self.register_buffer("prior_scale", torch.ones(latent_dim))
        self.register_buffer("raw_scale", torch.full((input_dim,), float(gaussian_scale)).expm1().log())

    # ------------------------------------------------------------------ pieces
    def check_data(self, batch: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` unless ``batch`` is ``(N, input_dim + 1)`` with valid labels last."""
        if batch.dim() != 2 or batch.shape[-1] != self.input_dim + 1:
            raise ValueError(
                f"{name} must have shape (N, {self.input_dim + 1}) (pixels, then the label), "
                f"got {tuple(batch.shape)}"
            )
        x, raw = batch[:, :-1], batch[:, -1]
        low = UNLABELLED if self.allow_unlabelled else 0
        bad = (raw != raw.round()) | (raw < low) | (raw >= self.num_classes)
        if bool(bad.any()):
            allowed = f"{low}..{self.num_classes - 1}"
            raise ValueError(f"{name} has labels outside {allowed}, e.g. {float(raw[bad][0])}")
        if self.likelihood == "bernoulli":
            check_unit_interval(x, name)

    def one_hot(self, y: torch.Tensor) -> torch.Tensor:
        """Return the one-hot codes ``(..., num_classes)`` of integer labels ``y``."""
        return nn.functional.one_hot(y, self.num_classes).to(self.prior_loc.dtype)

    def encode_z(self, x: torch.Tensor, y1h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return q(z | x, y)'s ``(loc, scale)`` for images ``x`` and one-hot labels ``y1h`` (broadcast)."""
        if self.arch == "conv":
            return self.encoder(x, y1h)
        return self.encoder(cat_features(x, y1h))

    def likelihood_dist(self, z: torch.Tensor, y1h: torch.Tensor) -> dist.TorchDistribution:
        """Return p(x | z, y) with event shape ``(input_dim,)``."""
        out = self.decoder(cat_features(z, y1h))
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        return dist.Normal(out, nn.functional.softplus(self.raw_scale)).to_event(1)

    def prior(self) -> dist.TorchDistribution:
        """Return p(z) = N(0, I) with event shape ``(latent_dim,)``."""
        return dist.Normal(self.prior_loc, self.prior_scale).to_event(1)

    def init_output_bias(self, data_mean: torch.Tensor) -> None:
        """Set the decoder's output bias to the pixel mean (its logit for Bernoulli data)."""
        link = "logit" if self.likelihood == "bernoulli" else "identity"
        bias = self.decoder.bias if self.arch == "conv" else self.decoder[-1].bias
        set_output_bias(bias, data_mean, link=link)

    def _labels_for(self, num: int, label: int | Sequence[int] | torch.Tensor | None) -> torch.Tensor:
        if label is None:
            return torch.arange(num) % self.num_classes
        y = torch.as_tensor(label, dtype=torch.long).reshape(-1)
        if bool(((y < 0) | (y >= self.num_classes)).any()):
            raise ValueError(f"label must be in 0..{self.num_classes - 1}, got {y.tolist()[:5]}")
        if y.numel() == 1:
            return y.expand(num).clone()
        if y.numel() != num:
            raise ValueError(f"give one label or {num} labels, got {y.numel()}")
        return y

    @torch.no_grad()
    def sample(
        self, num_samples: int, label: int | Sequence[int] | torch.Tensor | None = None, mean: bool = True
    ) -> torch.Tensor:
        """Return ``(num_samples, input_dim)`` draws of p(x | y): decoded means or, with ``mean=False``,
        observations. ``label``: one class for all, one per sample, or None (classes in turn 0, 1, ...)."""
        y = self._labels_for(num_samples, label).to(self.prior_loc.device)
        z = self.prior().sample((num_samples,))
        lik = self.likelihood_dist(z, self.one_hot(y))
        if not mean:
            return lik.sample()
        return lik.base_dist.probs if self.likelihood == "bernoulli" else lik.base_dist.loc

    @torch.no_grad()
    def decode_class(self, z: torch.Tensor, label: int | torch.Tensor) -> torch.Tensor:
        """Return the mean of p(x | z, y) for codes ``z`` ``(N, latent_dim)`` and class ``label``."""
        y = self._labels_for(z.shape[0], label).to(z.device)
        out = self.decoder(cat_features(z, self.one_hot(y)))
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out


class ConditionalVAE(_LabelledVAE):
    """A class-conditional VAE over ``(N, input_dim + 1)`` batches (pixels, then the label 0..C-1).

    Encoder q(z | x, y) and decoder p(x | z, y) see the one-hot label (appended to the input
    of the MLPs, or to the convolutional features of a conv encoder and to the codes of the
    conv decoder). ``sample(n, label=k)`` draws images of class ``k``.
    """

    def model(self, batch: torch.Tensor) -> None:
        """Generative model p(x, z | y) of a (mini)batch ``(B, input_dim + 1)``."""
        x, y = split_labels(batch)
        y1h = self.one_hot(y)
        with data_plate(x):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood_dist(z, y1h), obs=x)

    def guide(self, batch: torch.Tensor) -> None:
        """Amortized guide q(z | x, y)."""
        x, y = split_labels(batch)
        with data_plate(x):
            loc, scale = self.encode_z(x, self.one_hot(y))
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    @torch.no_grad()
    def reconstruct_labelled(self, batch: torch.Tensor) -> torch.Tensor:
        """Return the decoded mean at q(z | x, y)'s mean for each row of ``batch`` ``(N, input_dim)``."""
        x, y = split_labels(batch)
        y1h = self.one_hot(y)
        loc, _ = self.encode_z(x, y1h)
        return self.decode_class(loc, y)


class M2(_LabelledVAE):
    """Kingma et al.'s M2 over ``(N, input_dim + 1)`` batches (pixels, then the label or ``-1``).

    ``classifier`` is q(y | x) (an MLP with widths ``hidden``, or, for ``arch="conv"``, the
    conv stack and fully connected layers of a :class:`ConvEncoder`). ``alpha_weight``
    multiplies ``log q(y | x)`` of each labelled point (the paper's ``alpha`` divided by the
    number of labelled points); ``labelled_weight`` weights each labelled row (``1 / r`` for
    rows repeated ``r`` times); ``labelled_elbo_weight`` multiplies the labelled rows'
    ``L(x, y) + log p(y)`` only; ``num_labelled`` (balanced minibatches) is the size of the
    labelled set whose minibatch rides along with each step's unlabelled rows (see the module
    docstring for the scales). Train it with ``TraceEnum_ELBO`` and
    ``config_enumerate(m2.guide)``: with any other ELBO the guide samples y instead.
    """

    allow_unlabelled = True

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        latent_dim: int = 50,
        hidden: Sequence[int] = (500,),
        activation: str = "softplus",
        likelihood: str = "bernoulli",
        gaussian_scale: float = 0.1,
        arch: str = "mlp",
        image_shape: Sequence[int] | None = None,
        conv_channels: Sequence[int] = (32, 64),
        *,
        alpha_weight: float = 1.0,
        labelled_weight: float = 1.0,
        labelled_elbo_weight: float = 1.0,
        num_labelled: int | None = None,
    ):
        super().__init__(
            input_dim,
            num_classes,
            latent_dim,
            hidden,
            activation,
            likelihood,
            gaussian_scale,
            arch,
            image_shape,
            conv_channels,
        )
        if alpha_weight < 0 or labelled_weight <= 0 or labelled_elbo_weight <= 0:
            raise ValueError(
                "need alpha_weight >= 0, labelled_weight > 0 and labelled_elbo_weight > 0, got "
                f"{alpha_weight}, {labelled_weight}, {labelled_elbo_weight}"
            )
        if num_labelled is not None and num_labelled <= 0:
            raise ValueError(f"num_labelled must be positive, got {num_labelled}")
        self.alpha_weight, self.labelled_weight = float(alpha_weight), float(labelled_weight)
        self.labelled_elbo_weight = float(labelled_elbo_weight)
        self.num_labelled = None if num_labelled is None else int(num_labelled)
        if arch == "conv":
            self.classifier_net = ConvEncoder(image_shape, 1, conv_channels, hidden, activation)
            # the conv features and a head to the class logits
            self.classifier_net.head = mlp(
                self.classifier_net.features, list(hidden), num_classes, activation
            )
        else:
            self.classifier_net = mlp(input_dim, list(hidden), num_classes, activation)
        self.register_buffer("class_logits", torch.zeros(num_classes))  # uniform p(y)

    def classifier_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits ``(..., num_classes)`` of q(y | x) for images ``x`` ``(..., input_dim)``."""
        if self.arch == "conv":
            net = self.classifier_net
            lead = x.shape[:-1]
            feats = net.conv(x.reshape(-1, 1, *net.image_shape)).reshape(*lead, net.features)
            return net.head(feats)
        return self.classifier_net(x)

    def class_prior(self) -> dist.TorchDistribution:
        """Return p(y), uniform over the classes."""
        return dist.Categorical(logits=self.class_logits)

    def _scales(self, lab: torch.Tensor, batch: torch.Tensor) -> tuple[float, float]:
        """Return the ``(labelled, unlabelled)`` row scales of ``batch`` (``lab``: its labelled rows)."""
        if self.num_labelled is None:
            s = _minibatch_scale(batch)
            return s * self.labelled_weight, s
        n_lab = int(lab.sum())
        s_lab, s_unlab = _balanced_scales(self.num_labelled, n_lab, batch.shape[0] - n_lab)
        return s_lab * self.labelled_weight, s_unlab

    def model(self, batch: torch.Tensor) -> None:
        """Generative model p(x, y, z) of a batch; y observed where the label column is not -1."""
        x, labels = split_labels(batch)
        lab = labels >= 0
        s_lab, s_unlab = self._scales(lab, batch)
        if bool(lab.any()):
            xl, yl = x[lab], labels[lab]
            with poutine.scale(scale=s_lab), pyro.plate("labelled", xl.shape[0]):
                with poutine.scale(scale=self.labelled_elbo_weight):
                    z = pyro.sample("z_labelled", self.prior())
                    pyro.sample("y_labelled", self.class_prior(), obs=yl)
                    pyro.sample("x_labelled", self.likelihood_dist(z, self.one_hot(yl)), obs=xl)
                if self.alpha_weight > 0:
                    log_q = dist.Categorical(logits=self.classifier_logits(xl)).log_prob(yl)
                    pyro.factor("classifier", self.alpha_weight * log_q)
        if not bool(lab.all()):
            xu = x[~lab]
            with poutine.scale(scale=s_unlab), pyro.plate("data", xu.shape[0]):
                z = pyro.sample("z", self.prior())
                y = pyro.sample("y", self.class_prior())
                pyro.sample("x", self.likelihood_dist(z, self.one_hot(y)), obs=xu)

    def guide(self, batch: torch.Tensor) -> None:
        """Guide q(y | x) q(z | x, y); y is the label where there is one."""
        x, labels = split_labels(batch)
        lab = labels >= 0
        s_lab, s_unlab = self._scales(lab, batch)
        if bool(lab.any()):
            xl, yl = x[lab], labels[lab]
            with poutine.scale(scale=s_lab * self.labelled_elbo_weight), pyro.plate("labelled", xl.shape[0]):
                loc, scale = self.encode_z(xl, self.one_hot(yl))
                pyro.sample("z_labelled", dist.Normal(loc, scale).to_event(1))
        if not bool(lab.all()):
            xu = x[~lab]
            with poutine.scale(scale=s_unlab), pyro.plate("data", xu.shape[0]):
                y = pyro.sample("y", dist.Categorical(logits=self.classifier_logits(xu)))
                loc, scale = self.encode_z(xu, self.one_hot(y))
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        """Return the most likely class ``(N,)`` (int64) under q(y | x) of images ``x`` ``(N, input_dim)``."""
        was = self.training
        self.eval()
        try:
            out = [
                self.classifier_logits(x[i : i + batch_size]).argmax(-1)
                for i in range(0, x.shape[0], batch_size)
            ]
        finally:
            self.train(was)
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        """Return the fraction (0-1) of images ``x`` whose q(y | x) class is their label."""
        if x.shape[0] == 0 or labels.shape != (x.shape[0],):
            raise ValueError(f"need as many labels as images (at least one), got {tuple(labels.shape)}")
        return float((self.predict(x) == labels.long()).double().mean())
