"""Observation models p(x|z): a decoder's raw output becomes a distribution over images."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from vaebench.distributions.validation import UNCHECKED

GAUSSIAN_SCALE = 0.4  # sigma_p of the latent-optimisation lab (reference 002)


def at_least_float32(logits: Tensor) -> Tensor:
    """The decoder's output in float32 (or wider): a decoder run under bfloat16 autocast
    (``--is-precision bfloat16``) still gets its likelihood summed over pixels in float32."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


class IndependentBernoulli(Independent):
    """``Independent(Bernoulli(logits=l), 1)`` whose ``log_prob`` reads the logits in two passes.

    log p(x) = sum_d x_d l_d - softplus(l_d), the value Bernoulli's per-pixel
    binary cross-entropy gives (a test checks the two agree), without its
    broadcast copies, which matters in the importance-sampling loop, where a
    chunk holds thousands of decoded images. Everything else is torch's.
    """

    def __init__(self, logits: Tensor):
        super().__init__(Bernoulli(logits=at_least_float32(logits), **UNCHECKED), 1, **UNCHECKED)

    def log_prob(self, value: Tensor) -> Tensor:
        logits = self.base_dist.logits
        return (logits * value).sum(-1) - F.softplus(logits).sum(-1)


def bernoulli_likelihood(logits: Tensor) -> Distribution:
    """Independent Bernoulli pixels parameterised by logits; ``mean`` is the probability image."""
    return IndependentBernoulli(logits)


def gaussian_likelihood(logits: Tensor) -> Distribution:
    """Independent Normal pixels with mean sigmoid(logits) and fixed scale sigma_p = 0.4."""
    return Independent(Normal(torch.sigmoid(at_least_float32(logits)), GAUSSIAN_SCALE, **UNCHECKED), 1, **UNCHECKED)


LIKELIHOODS = {"bernoulli": bernoulli_likelihood, "gaussian": gaussian_likelihood}
