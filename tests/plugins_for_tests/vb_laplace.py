"""A third-party prior and objective, as a user would write them.

``laplace``: independent Laplace(0, 1) over the continuous latent (no closed-form KL
with a Gaussian q, so the ELBO uses the Monte-Carlo KL). ``beta-elbo``: the ELBO with
the KL weighted by ``beta``. Both combine with any built-in variant that accepts them.
"""

import torch
from torch.distributions import Independent, Laplace

from vaebench import hookimpl
from vaebench.components import ObjectiveComponent, PriorComponent
from vaebench.distributions.priors import Prior
from vaebench.objectives import WeightedKL
from vaebench.schedules import Constant


class LaplacePrior(Prior):
    label = "Laplace(0,1)"

    def __init__(self, dim):
        super().__init__()
        self.register_buffer("loc", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def distribution(self):
        return Independent(Laplace(self.loc, self.scale), 1)


class LaplaceComponent(PriorComponent):
    name = "laplace"
    description = "independent Laplace(0, 1) over the continuous latent"

    def build(self, context):
        return LaplacePrior(context.settings.latent_dim)


class BetaELBO(ObjectiveComponent):
    name = "beta-elbo"
    description = "reconstruction + beta * KL"
    options = {"beta": 4.0}

    def build(self, context):
        return WeightedKL(Constant(context.options["beta"]))


@hookimpl
def register_priors(register):
    register(LaplaceComponent())


@hookimpl
def register_objectives(register):
    register(BetaELBO())
