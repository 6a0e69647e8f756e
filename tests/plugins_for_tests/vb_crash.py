"""A variant whose training kills its own process (as a segfault or the OOM killer would)."""

import os
import signal

from vaebench import hookimpl
from vaebench.distributions import StandardNormalPrior
from vaebench.models import GaussianVAE
from vaebench.objectives import ELBO
from vaebench.variant import Recipe, Variant


class Crash(Variant):
    name = "crash"
    description = "dies with SIGKILL at its first training step"

    def build(self, context):
        s = context.settings
        model = GaussianVAE(context.x_dim, s.hidden, s.latent_dim, StandardNormalPrior(s.latent_dim), s.likelihood, context.n_classes)
        elbo = ELBO()

        def objective(model, batch, progress):
            os.kill(os.getpid(), signal.SIGKILL)
            return elbo(model, batch, progress)

        return Recipe(model, objective, latent="N(0,I)")


@hookimpl
def register_variants(register):
    register(Crash())
