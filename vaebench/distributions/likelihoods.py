"""Observation models p(x|z): a decoder's raw output becomes a distribution over images."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from vaebench.distributions.validation import UNCHECKED

GAUSSIAN_SCALE = 0.4  # sigma_p of the latent-optimisation lab (reference 002)


def bernoulli_likelihood(logits: Tensor) -> Distribution:
    """Independent Bernoulli pixels parameterised by logits; ``mean`` is the probability image."""
    return Independent(Bernoulli(logits=logits, **UNCHECKED), 1, **UNCHECKED)


def gaussian_likelihood(logits: Tensor) -> Distribution:
    """Independent Normal pixels with mean sigmoid(logits) and fixed scale sigma_p = 0.4."""
    return Independent(Normal(torch.sigmoid(logits), GAUSSIAN_SCALE, **UNCHECKED), 1, **UNCHECKED)


LIKELIHOODS = {"bernoulli": bernoulli_likelihood, "gaussian": gaussian_likelihood}
