"""Likelihoods and priors on top of torch.distributions: only what it lacks."""

from vaebench.distributions.likelihoods import bernoulli_likelihood, gaussian_likelihood, LIKELIHOODS
from vaebench.distributions.priors import (
    BernoulliPrior,
    GaussianMixturePrior,
    JointPrior,
    MixturePrior,
    StandardNormalPrior,
    VampPrior,
)
from vaebench.distributions.product import Concatenated

__all__ = [
    "bernoulli_likelihood",
    "gaussian_likelihood",
    "LIKELIHOODS",
    "BernoulliPrior",
    "GaussianMixturePrior",
    "JointPrior",
    "MixturePrior",
    "StandardNormalPrior",
    "VampPrior",
    "Concatenated",
]
