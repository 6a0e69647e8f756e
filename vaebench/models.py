"""The model interface and the networks the built-in variants share.

A model is an ``nn.Module`` with

* ``prior``: a :class:`vaebench.distributions.priors.Prior`;
* ``posterior(x, y=None, index=None)``: a distribution over z with batch shape [B]
  (``index`` holds the examples' positions in their split, for per-example latents);
* ``likelihood(z, y=None)``: a distribution over x with batch shape [..., B].

Optional capabilities, all with safe defaults here:

* ``label_conditioned``: p(x|y); metrics also report the marginal over labels;
* ``prepare_inference(split, x, y)``: called before a split is evaluated (latent
  optimisation fits q for unseen examples there);
* ``cluster(x, y)``: the model's own discrete latent as class ids, or ``None``, with
  ``clusters`` saying how many categories it has;
* ``proposal(x, y=None, index=None)``: what IS-NLL samples z from; the posterior
  unless the model says otherwise, with ``proposal_label`` naming it in the results;
* ``variational(x, y=None, index=None)``: the q(z|x) of the ELBO columns (and of the
  gaps' amortised ELBO); the posterior unless the model offers several and chooses
  one on validation, with ``variational_label`` naming it. Any q gives a valid bound,
  so a model that offers several should use the one with the best validation ELBO;
* ``train_q_differs``: a reason, when the training images' q is made another way than
  other splits' (latent-opt's trained table against a fit with the decoder frozen):
  IS-NLL's train - test is then n/a;
* ``logvar_range``: the (lo, hi) its encoder clips log sigma^2 to; a model that honours the
  ``logvar_range`` setting sets it (the runner refuses the setting for one that does not);
* ``prepare_evaluation(data, samples) -> dict``: called once before a trained model
  is evaluated (ae-gmm chooses its proposal on the validation split there); the
  values it returns are recorded with the run.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from vaebench.distributions import LIKELIHOODS
from vaebench.distributions.validation import UNCHECKED
from vaebench.distributions.priors import Prior


class GatedDense(nn.Module):
    """A gated linear unit, h(x) * sigmoid(g(x)) with two linear maps h and g (Dauphin et al. 2017),
    the hidden layer of Tomczak & Welling 2018's code (``GatedDense``, h without an activation)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.h = nn.Linear(in_features, out_features)
        self.g = nn.Linear(in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
HIDDEN_LAYERS = (*ACTIVATIONS, "gated")


def mlp(sizes: Sequence[int], activation: str = "relu") -> nn.Sequential:
    """Layers of ``sizes``: linear maps with ``activation`` (relu or tanh) between them, or with
    ``"gated"`` every hidden layer a :class:`GatedDense`; the last layer is linear either way."""
    if activation not in HIDDEN_LAYERS:
        raise ValueError(f"activation must be one of {HIDDEN_LAYERS}, got {activation!r}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        hidden = i < len(sizes) - 2
        if activation == "gated" and hidden:
            layers.append(GatedDense(a, b))
            continue
        layers.append(nn.Linear(a, b))
        if hidden:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def use_prior(model: nn.Module, prior: Prior) -> Prior:
    """Give ``prior`` to ``model``; a prior that needs the model (the VampPrior) is bound to it."""
    bind = getattr(prior, "bind", None)
    if bind is not None:
        bind(model)
    return prior


def gaussian_from(params: Tensor, logvar_range: Sequence[float] = ()) -> Distribution:
    """Split ``[..., 2D]`` into (mu, log sigma^2) and return N(mu, diag sigma^2); with
    ``logvar_range`` (lo, hi) the log-variance passes a hard tanh into [lo, hi] first."""
    mu, logvar = params.chunk(2, dim=-1)
    if logvar_range:
        logvar = F.hardtanh(logvar, *logvar_range)
    return Independent(Normal(mu, torch.exp(0.5 * logvar), **UNCHECKED), 1, **UNCHECKED)


class LatentVariableModel(nn.Module):
    """Base class with the optional capabilities' defaults."""

    label_conditioned: bool = False
    prior: Prior
    proposal_label: str = "q(z|x)"
    variational_label: str | None = None  # None: the posterior's, proposal_label
    clusters: int | None = None  # categories of the discrete latent cluster() reads, when the model has one

    def __init__(self, likelihood: str, n_classes: int):
        super().__init__()
        self.likelihood_name = likelihood
        self._likelihood = LIKELIHOODS[likelihood]
        self.n_classes = n_classes

    def posterior(self, x: Tensor, y: Tensor | None = None, index: Tensor | None = None) -> Distribution:
        raise NotImplementedError

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def likelihood(self, z: Tensor, y: Tensor | None = None) -> Distribution:
        return self._likelihood(self.decode(z, y))

    def prepare_inference(self, split: str, x: Tensor, y: Tensor) -> None:
        """Called before ``split`` is evaluated; amortised models need nothing."""

    def proposal(self, x: Tensor, y: Tensor | None = None, index: Tensor | None = None) -> Distribution:
        """The distribution IS-NLL draws z from: by default the posterior."""
        return self.posterior(x, y, index)

    def variational(self, x: Tensor, y: Tensor | None = None, index: Tensor | None = None) -> Distribution:
        """The q(z|x) of the ELBO columns: by default the posterior."""
        return self.posterior(x, y, index)

    def cluster(self, x: Tensor, y: Tensor | None = None) -> Tensor | None:
        """Class ids from the model's own discrete latent; ``None`` when it has none."""
        return None

    def onehot(self, y: Tensor) -> Tensor:
        return F.one_hot(y, self.n_classes).to(torch.get_default_dtype())


class GaussianVAE(LatentVariableModel):
    """MLP encoder to (mu, log sigma^2), MLP decoder to pixel logits.

    ``prior`` defaults to N(0, I). With ``condition_decoder`` (and optionally
    ``condition_encoder``) the networks also get onehot(y): the conditional VAE.
    ``logvar_range`` (lo, hi) clips the encoder's log sigma^2 with a hard tanh.
    """

    def __init__(
        self,
        x_dim: int,
        hidden: Sequence[int],
        latent_dim: int,
        prior: Prior,
        likelihood: str = "bernoulli",
        n_classes: int = 10,
        condition_encoder: bool = False,
        condition_decoder: bool = False,
        activation: str = "relu",
        logvar_range: Sequence[float] = (),
    ):
        super().__init__(likelihood, n_classes)
        self.logvar_range = tuple(logvar_range)
        self.condition_encoder = condition_encoder
        self.condition_decoder = condition_decoder
        self.label_conditioned = condition_encoder or condition_decoder
        self.proposal_label = "q(z|x,y)" if condition_encoder else "q(z|x)"
        enc_in = x_dim + (n_classes if condition_encoder else 0)
        dec_in = latent_dim + (n_classes if condition_decoder else 0)
        self.encoder = mlp([enc_in, *hidden, 2 * latent_dim], activation)
        self.decoder = mlp([dec_in, *reversed(hidden), x_dim], activation)
        self.prior = use_prior(self, prior)

    def posterior(self, x, y=None, index=None):
        if self.condition_encoder:
            x = torch.cat([x, self.onehot(y)], dim=-1)
        return gaussian_from(self.encoder(x), self.logvar_range)

    def decode(self, z, y=None):
        if self.condition_decoder:
            label = self.onehot(y)
            if z.dim() > label.dim():  # importance samples: [K, B, D]
                label = label.expand(*z.shape[:-1], label.shape[-1])
            z = torch.cat([z, label], dim=-1)
        return self.decoder(z)


def proposal_of(model, x: Tensor, y: Tensor | None = None, index: Tensor | None = None) -> Distribution:
    """``model.proposal`` where the model has one (every :class:`LatentVariableModel`), else its posterior."""
    proposal = getattr(model, "proposal", None)
    return proposal(x, y, index) if proposal is not None else model.posterior(x, y, index)


def variational_of(model, x: Tensor, y: Tensor | None = None, index: Tensor | None = None) -> Distribution:
    """``model.variational`` (the ELBO's q) where the model has one, else its posterior."""
    variational = getattr(model, "variational", None)
    return variational(x, y, index) if variational is not None else model.posterior(x, y, index)


def variational_label_of(model) -> str:
    """What the ELBO's q is, for the results: ``variational_label``, else the posterior's label."""
    return getattr(model, "variational_label", None) or getattr(model, "proposal_label", None) or "q(z|x)"


def he_init(model: nn.Module) -> None:
    """Tomczak & Welling 2018's initialisation (their code's ``he_init``): every ``nn.Linear``'s
    weight drawn from N(0, 2 / fan_in), biases left at PyTorch's default."""
    with torch.no_grad():
        for module in model.modules():
            if type(module) is nn.Linear:
                module.weight.normal_(0.0, (2.0 / module.in_features) ** 0.5)


def glorot_init(model: nn.Module, train_mean: Tensor) -> None:
    """Burda et al. 2016's initialisation (their code's ``Linear.random``): every ``nn.Linear``
    Glorot-uniform with zero biases, and the decoder's output bias at the logit of the
    training images' mean (clipped to [0.001, 0.999]), so that the first decoded images
    are the average image. The output layer is the last ``nn.Linear`` of ``model.decoder``
    whose width is the image's; a model without one keeps its output bias at zero."""
    with torch.no_grad():
        for module in model.modules():
            if type(module) is nn.Linear:
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    module.bias.zero_()
        decoder = getattr(model, "decoder", None)
        outputs = [m for m in decoder.modules() if type(m) is nn.Linear] if isinstance(decoder, nn.Module) else []
        if outputs and outputs[-1].out_features == train_mean.numel() and outputs[-1].bias is not None:
            mean = train_mean.clamp(0.001, 0.999)
            outputs[-1].bias.copy_(torch.log(mean) - torch.log1p(-mean))
