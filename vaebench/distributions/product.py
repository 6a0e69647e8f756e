"""A distribution over a latent vector made of independent blocks (continuous z, one-hot c).

torch.distributions has no product of heterogeneous distributions; this
concatenates the blocks' event vectors, sums their ``log_prob`` and their
KL divergences (registered with ``kl_divergence``), and keeps ``rsample``
where every block has it.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints, kl_divergence, register_kl


class Concatenated(Distribution):
    """Independent blocks, each with a 1-D event, concatenated into one event vector."""

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(self, parts: Sequence[Distribution], validate_args=None):
        self.parts = list(parts)
        self.sizes = [p.event_shape[-1] for p in self.parts]
        batch_shape = self.parts[0].batch_shape
        super().__init__(batch_shape, torch.Size([sum(self.sizes)]), validate_args=False)

    def expand(self, batch_shape, _instance=None) -> "Concatenated":
        return Concatenated([p.expand(batch_shape) for p in self.parts])

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return all(p.has_rsample for p in self.parts)

    def split(self, value: Tensor) -> list[Tensor]:
        return list(torch.split(value, self.sizes, dim=-1))

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        return torch.cat([p.sample(sample_shape) for p in self.parts], dim=-1)

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        return torch.cat([p.rsample(sample_shape) for p in self.parts], dim=-1)

    def log_prob(self, value: Tensor) -> Tensor:
        return sum(p.log_prob(v) for p, v in zip(self.parts, self.split(value)))

    def entropy(self) -> Tensor:
        return sum(p.entropy() for p in self.parts)

    @property
    def mean(self) -> Tensor:
        return torch.cat([p.mean for p in self.parts], dim=-1)


@register_kl(Concatenated, Concatenated)
def _kl_concatenated(p: Concatenated, q: Concatenated) -> Tensor:
    return sum(kl_divergence(a, b) for a, b in zip(p.parts, q.parts))
