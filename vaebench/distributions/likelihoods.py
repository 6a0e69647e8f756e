"""Observation models p(x|z): a decoder's raw output becomes a distribution over images."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from vaebench.fast import inference_kernel
from vaebench.distributions.validation import UNCHECKED

GAUSSIAN_SCALE = 0.4  # sigma_p of the latent-optimisation lab (reference 002)


def at_least_float32(logits: Tensor) -> Tensor:
    """The decoder's output in float32 (or wider): a decoder run under bfloat16 autocast
    (``--is-precision bfloat16``) still gets its likelihood summed over pixels in float32."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


@inference_kernel
def bernoulli_log_prob(logits: Tensor, value: Tensor) -> Tensor:
    """sum_d x_d l_d - softplus(l_d): Bernoulli(logits=l).log_prob(x) summed over the last dim."""
    logits = at_least_float32(logits)
    return (logits * value).sum(-1) - F.softplus(logits).sum(-1)


@inference_kernel
def gaussian_log_prob(mean: Tensor, value: Tensor) -> Tensor:
    """Normal(mean, GAUSSIAN_SCALE).log_prob(x) summed over the last dim."""
    log_normaliser = math.log(GAUSSIAN_SCALE) + 0.5 * math.log(2 * math.pi)
    return (-((value - mean) ** 2) / (2 * GAUSSIAN_SCALE**2) - log_normaliser).sum(-1)


class IndependentBernoulli(Independent):
    """``Independent(Bernoulli(logits=l), 1)`` whose ``log_prob`` is :func:`bernoulli_log_prob`.

    It gives the value of Bernoulli's per-pixel binary cross-entropy (a test checks
    the two agree) without its broadcast copies, and in one fused pass when no
    gradient is wanted: the importance-sampling loop scores thousands of decoded
    images per chunk. The logits are kept as the decoder made them (bfloat16 under
    ``--is-precision bfloat16``); ``log_prob`` upcasts them inside that pass.
    Everything else is torch's.
    """

    def __init__(self, logits: Tensor):
        super().__init__(Bernoulli(logits=logits, **UNCHECKED), 1, **UNCHECKED)

    def log_prob(self, value: Tensor) -> Tensor:
        return bernoulli_log_prob(self.base_dist.logits, value)


class IndependentGaussian(Independent):
    """``Independent(Normal(sigmoid(l), GAUSSIAN_SCALE), 1)`` whose ``log_prob`` is :func:`gaussian_log_prob`."""

    def __init__(self, logits: Tensor):
        super().__init__(Normal(torch.sigmoid(at_least_float32(logits)), GAUSSIAN_SCALE, **UNCHECKED), 1, **UNCHECKED)

    def log_prob(self, value: Tensor) -> Tensor:
        return gaussian_log_prob(self.base_dist.loc, value)


def bernoulli_likelihood(logits: Tensor) -> Distribution:
    """Independent Bernoulli pixels parameterised by logits; ``mean`` is the probability image."""
    return IndependentBernoulli(logits)


def gaussian_likelihood(logits: Tensor) -> Distribution:
    """Independent Normal pixels with mean sigmoid(logits) and fixed scale sigma_p = 0.4."""
    return IndependentGaussian(logits)


LIKELIHOODS = {"bernoulli": bernoulli_likelihood, "gaussian": gaussian_likelihood}
