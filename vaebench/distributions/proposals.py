"""Importance-sampling proposals built from a posterior and a prior.

A defensive mixture (Hesterberg 1995) draws from the model's own q(z|x) with
probability ``weight`` and from the prior otherwise:

    r(z | x) = weight * q(z | x) + (1 - weight) * p(z)

Its importance weights p(x, z) / r(z | x) never exceed p(x | z) / (1 - weight), so
an estimate of log p(x) with it cannot be much worse than plain Monte Carlo from
the prior, however poor q is; where q is good, most of its samples land where
p(z | x) has mass.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints


class DefensiveMixture(Distribution):
    """``weight * q + (1 - weight) * prior``, for ``q`` with batch shape [B] and a prior with batch shape ()."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, q: Distribution, prior: Distribution, weight: float, validate_args=None):
        if not 0.0 < weight < 1.0:
            raise ValueError(f"a defensive mixture needs 0 < weight < 1, got {weight}")
        self.q, self.prior, self.weight = q, prior.expand(q.batch_shape), float(weight)
        super().__init__(q.batch_shape, q.event_shape, validate_args=False)

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        with torch.no_grad():
            from_q = self.q.sample(sample_shape)
            from_prior = self.prior.sample(sample_shape).to(from_q.dtype)
            pick = torch.rand(from_q.shape[: from_q.dim() - len(self.event_shape)], device=from_q.device) < self.weight
            return torch.where(pick.reshape(*pick.shape, *([1] * len(self.event_shape))), from_q, from_prior)

    def log_prob(self, value: Tensor) -> Tensor:
        return torch.logaddexp(
            math.log(self.weight) + self.q.log_prob(value),
            math.log1p(-self.weight) + self.prior.log_prob(value),
        )

    @property
    def mean(self) -> Tensor:
        return self.weight * self.q.mean + (1 - self.weight) * self.prior.mean
