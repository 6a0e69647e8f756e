"""A full-covariance Gaussian mixture whose ``sample`` draws one component per sample.

torch's ``MixtureSameFamily.sample`` draws a sample from *every* component and then
keeps one, and on an expanded mixture (one per image, as importance sampling uses it)
its ``MultivariateNormal`` transforms each of those draws with a broadcast batched
matmul. With 20 components that made drawing from ae-gmm's GMM prior cost more than
the rest of its IS-NLL. Here the component of each sample is drawn first, then each
component transforms only its own standard-normal draws. The distribution is the
same; ``log_prob`` and everything else are ``MixtureSameFamily``'s.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal


class GaussianMixture(MixtureSameFamily):
    """sum_c weights[c] N(means[c], scale_tril[c] scale_tril[c]^T), batch shape () until expanded."""

    def __init__(self, weights: Tensor, means: Tensor, scale_tril: Tensor, validate_args=None):
        self.weights, self.means, self.scale_tril = weights, means, scale_tril
        super().__init__(Categorical(probs=weights), MultivariateNormal(means, scale_tril=scale_tril), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GaussianMixture, _instance)
        new.weights, new.means, new.scale_tril = self.weights, self.means, self.scale_tril
        return super().expand(batch_shape, _instance=new)

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.batch_shape
            n = shape.numel()
            component = torch.multinomial(self.weights, n, replacement=True) if n else torch.empty(0, dtype=torch.long)
            noise = torch.randn(n, self.means.shape[-1], dtype=self.means.dtype, device=self.means.device)
            z = torch.empty_like(noise)
            for c in component.unique().tolist():
                chosen = component == c
                z[chosen] = self.means[c] + noise[chosen] @ self.scale_tril[c].T
            return z.reshape(*shape, *self.event_shape)
