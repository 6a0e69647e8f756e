"""Gaussian mixtures whose ``sample`` draws one component per sample and whose ``log_prob``
avoids broadcasting every sample against every component: a full-covariance one (ae-gmm's
fitted prior) and a diagonal one (the MoG prior and the VampPrior, below).

torch's ``MixtureSameFamily.sample`` draws a sample from *every* component and then
keeps one, and on an expanded mixture (one per image, as importance sampling uses it)
its ``MultivariateNormal`` transforms each of those draws with a broadcast batched
matmul. With 20 components that made drawing from ae-gmm's GMM prior cost more than
the rest of its IS-NLL. Here the component of each sample is drawn first, then each
component transforms only its own standard-normal draws.

``log_prob`` is the same sum, computed the other way round too. ``MultivariateNormal``
broadcasts every sample against every component and solves one 20x20 triangular system
per pair: 8.7 s of a 66 s cProfile of ``vaebench run --all``, in ae-gmm's prior. Here
each component solves one triangular system with every sample as a right-hand side
(one BLAS call, not N). The result equals ``MixtureSameFamily.log_prob`` up to float32
rounding (tested). Everything else is ``MixtureSameFamily``'s.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Categorical, Independent, MixtureSameFamily, MultivariateNormal, Normal


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

    def log_prob(self, value: Tensor) -> Tensor:
        """log sum_c w_c N(value; mu_c, L_c L_c^T) for ``value`` of shape [..., D] (broadcast against the batch shape)."""
        if self._validate_args:
            self._validate_sample(value)
        dim = self.means.shape[-1]
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        rows = value.expand(*shape, dim).reshape(-1, dim)
        log_weights = (self.weights / self.weights.sum()).log()  # the unexpanded mixture's
        half_log_det = self.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        per_component = []
        for c in range(self.means.shape[0]):
            # L_c y = (z - mu_c)^T for every row z at once: |y|^2 is the Mahalanobis distance
            y = torch.linalg.solve_triangular(self.scale_tril[c], (rows - self.means[c]).T, upper=False)
            per_component.append(log_weights[c] - half_log_det[c] - 0.5 * (dim * math.log(2 * math.pi) + y.pow(2).sum(0)))
        return torch.logsumexp(torch.stack(per_component, dim=-1), dim=-1).reshape(shape)


def is_diagonal_gaussian(q) -> bool:
    """Whether ``q`` is ``Independent(Normal(loc, scale), 1)``: a diagonal Gaussian over the last dimension."""
    return isinstance(q, Independent) and isinstance(q.base_dist, Normal) and q.reinterpreted_batch_ndims == 1


class DiagonalGaussianMixture(MixtureSameFamily):
    """sum_k softmax(logits)[k] N(loc[k], diag scale[k]^2): the MoG prior and the VampPrior.

    ``MixtureSameFamily.log_prob`` broadcasts every sample against every component, an
    [N, K, D] tensor and its backward: with the VampPrior's 500 components that was 99 of the
    122 s the gaps metric took on a digits smoke run. Here the squared distances are expanded,
    sum_d (z_d - mu_kd)^2 / s_kd^2 = z^2 . p_k - 2 z . (mu_k p_k) + mu_k^2 . p_k with p = 1/s^2,
    three [N, D] x [D, K] products, computed in float64 so that the expansion loses nothing to
    cancellation (a component with s = 0.01 has p = 10^4). The result equals
    ``MixtureSameFamily.log_prob`` up to float32 rounding (tested). ``sample`` draws each sample's
    component first and transforms only its own draw, instead of drawing from all K.
    """

    def __init__(self, logits: Tensor, loc: Tensor, scale: Tensor, validate_args=None):
        self.logits, self.loc, self.scale = logits, loc, scale
        components = Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)
        super().__init__(Categorical(logits=logits, validate_args=False), components, validate_args=False)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiagonalGaussianMixture, _instance)
        new.logits, new.loc, new.scale = self.logits, self.loc, self.scale
        return super().expand(batch_shape, _instance=new)

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.batch_shape
            component = Categorical(logits=self.logits).sample(shape)  # [*shape]
            noise = torch.randn(*shape, self.loc.shape[-1], dtype=self.loc.dtype, device=self.loc.device)
            return self.loc[component] + self.scale[component] * noise

    def log_prob(self, value: Tensor) -> Tensor:
        """log sum_k w_k N(value; loc_k, diag scale_k^2) for ``value`` of shape [..., D]."""
        dim = self.loc.shape[-1]
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        rows = value.expand(*shape, dim).reshape(-1, dim).double()
        loc, precision = self.loc.double(), self.scale.double().pow(-2)
        squared = rows.pow(2) @ precision.T - 2 * (rows @ (loc * precision).T) + (loc.pow(2) * precision).sum(-1)
        log_norm = torch.log_softmax(self.logits.double(), -1) - self.scale.double().log().sum(-1) - 0.5 * dim * math.log(2 * math.pi)
        per_component = (log_norm - 0.5 * squared).to(value.dtype)  # the cancellation is behind us: back to float32
        return torch.logsumexp(per_component, dim=-1).reshape(shape)
