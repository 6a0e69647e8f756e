"""Priors p(z) as modules, so they move with ``.to(device)`` and may own parameters.

Every prior has ``distribution()`` (a torch Distribution with batch shape ()),
``log_prob(z) -> [B]`` and ``sample(n) -> [n, D]``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    OneHotCategorical,
)

from vaebench.distributions.gaussian_mixture import DiagonalGaussianMixture, GaussianMixture, is_diagonal_gaussian
from vaebench.distributions.product import Concatenated
from vaebench.distributions.validation import UNCHECKED


class Prior(nn.Module):
    """Base class: subclasses implement :meth:`distribution`.

    Within :func:`frozen_priors` a prior's ``distribution()`` is the one built on entering:
    evaluation never changes the weights, and a learned prior (the VampPrior encodes its
    pseudo-inputs) is then built once instead of at every call.
    """

    def distribution(self) -> Distribution:
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        return self.distribution().log_prob(z)

    def sample(self, n: int) -> Tensor:
        return self.distribution().sample((n,))


@contextmanager
def frozen_priors(model: nn.Module) -> Iterator[None]:
    """Build every prior of ``model`` once, without gradients, and let ``distribution()`` return
    that for the duration of the block (evaluation: the weights are fixed). The distribution's
    parameters are constants: gradients still reach what it scores (z), never the prior."""
    priors = [m for m in model.modules() if isinstance(m, Prior)]
    with torch.no_grad():
        built = [(prior, prior.distribution()) for prior in priors]
    try:
        for prior, distribution in built:
            prior.__dict__["distribution"] = lambda distribution=distribution: distribution  # shadows the method
        yield
    finally:
        for prior, _ in built:
            prior.__dict__.pop("distribution", None)


class StandardNormalPrior(Prior):
    """N(0, I) over ``dim`` dimensions."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("loc", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def distribution(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, **UNCHECKED), 1, **UNCHECKED)


class BernoulliPrior(Prior):
    """Independent fair coins: Bernoulli(0.5) over ``dim`` bits."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("probs", torch.full((dim,), 0.5))

    def distribution(self) -> Distribution:
        return Independent(Bernoulli(probs=self.probs, **UNCHECKED), 1, **UNCHECKED)


class MixturePrior(Prior):
    """A learnable mixture of K diagonal Gaussians (reference 003's MoG prior).

    Means start from N(0, I), log-variances at 0 and the mixing logits at 0; all
    three are trained with the model.
    """

    def __init__(self, dim: int, components: int = 16):
        super().__init__()
        self.means = nn.Parameter(torch.randn(components, dim))
        self.logvars = nn.Parameter(torch.zeros(components, dim))
        self.logits = nn.Parameter(torch.zeros(components))

    def distribution(self) -> Distribution:
        return DiagonalGaussianMixture(self.logits, self.means, torch.exp(0.5 * self.logvars))


class GaussianMixturePrior(Prior):
    """A fixed full-covariance Gaussian mixture, filled from a fitted sklearn GaussianMixture.

    The parameters are buffers, so they are saved in the checkpoint with the model.
    """

    def __init__(self, dim: int, components: int):
        super().__init__()
        self.register_buffer("weights", torch.full((components,), 1.0 / components))
        self.register_buffer("means", torch.zeros(components, dim))
        self.register_buffer("scale_tril", torch.eye(dim).repeat(components, 1, 1))

    @torch.no_grad()
    def fill_from(self, gmm) -> None:
        """Copy a fitted ``sklearn.mixture.GaussianMixture(covariance_type='full')``."""
        self.weights.copy_(torch.as_tensor(gmm.weights_, dtype=torch.float32))
        self.means.copy_(torch.as_tensor(gmm.means_, dtype=torch.float32))
        covariances = torch.as_tensor(gmm.covariances_, dtype=torch.float64)
        self.scale_tril.copy_(torch.linalg.cholesky(covariances).float())

    def distribution(self) -> Distribution:
        return GaussianMixture(self.weights, self.means, self.scale_tril)

    def fitted_parameters(self) -> int:
        """Free parameters of the fitted mixture: K - 1 weights, K means, K full covariances."""
        k, d = self.means.shape
        return (k - 1) + k * d + k * d * (d + 1) // 2

    def component(self, z: Tensor) -> Tensor:
        """The most responsible mixture component of each code: the model's discrete latent."""
        d = self.distribution()
        log_joint = d.component_distribution.log_prob(z.unsqueeze(-2)) + torch.log(self.weights)
        return log_joint.argmax(-1)


class JointPrior(Prior):
    """p(z) p(c): N(0, I) over ``dim`` and a uniform one-hot categorical over ``categories``."""

    def __init__(self, dim: int, categories: int):
        super().__init__()
        self.normal = StandardNormalPrior(dim)
        self.register_buffer("probs", torch.full((categories,), 1.0 / categories))

    def distribution(self) -> Distribution:
        return Concatenated([self.normal.distribution(), OneHotCategorical(probs=self.probs)])



class VampPrior(Prior):
    """The VampPrior (Tomczak & Welling 2018): p(z) = 1/K sum_k q(z | u_k), a mixture of the
    encoder's own posteriors at K learnable pseudo-inputs u_k.

    The pseudo-inputs live in data space, clipped to [0, 1] by a hard tanh, and start
    near 0.05 as in the paper's code. ``bind(model)`` connects the prior to the model whose
    encoder it evaluates (models that accept priors call it); the model's ``posterior`` must
    return a distribution with batch shape [K] for K inputs.
    """

    label = "VampPrior"

    def __init__(self, x_dim: int, components: int = 500):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.pseudo_inputs = nn.Parameter(0.05 + 0.01 * torch.randn(components, x_dim, generator=generator))
        object.__setattr__(self, "_posterior", None)

    def bind(self, model) -> None:
        object.__setattr__(self, "_posterior", model.posterior)  # not a submodule: no cycle in the module tree

    def distribution(self) -> Distribution:
        if self._posterior is None:
            raise RuntimeError("VampPrior is not bound to a model; the model's constructor must call vaebench.models.use_prior")
        u = torch.nn.functional.hardtanh(self.pseudo_inputs, 0.0, 1.0)
        components = self._posterior(u)
        logits = torch.zeros(u.shape[0], device=u.device)
        if is_diagonal_gaussian(components):
            return DiagonalGaussianMixture(logits, components.base_dist.loc, components.base_dist.scale)
        return MixtureSameFamily(Categorical(logits=logits), components)
