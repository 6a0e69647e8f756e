"""An example third-party plugin: the beta-VAE (Higgins et al. 2017) with beta = 4.

It reuses vaebench's shared Gaussian VAE and the weighted-KL objective; the
suite's widths, latent size and likelihood arrive in ``context.settings``.
"""

from vaebench import hookimpl
from vaebench.distributions import StandardNormalPrior
from vaebench.models import GaussianVAE
from vaebench.objectives import WeightedKL
from vaebench.schedules import Constant
from vaebench.variant import BuildContext, Recipe, Variant


class BetaVAE(Variant):
    name = "example-beta-vae"
    description = "beta-VAE with a constant KL weight (example third-party plugin)"
    reference = "Higgins et al. 2017"
    options = {"beta": 4.0}  # overridable: --option example-beta-vae.beta=2
    accepts_prior = True  # --prior NAME gives it any registered prior

    def build(self, context: BuildContext) -> Recipe:
        s = context.settings  # the suite's shared widths, latent size, activation, likelihood
        prior = context.prior or StandardNormalPrior(s.latent_dim)
        model = GaussianVAE(context.x_dim, s.hidden, s.latent_dim, prior, s.likelihood, context.n_classes, activation=s.activation)
        return Recipe(model, WeightedKL(Constant(context.options["beta"])), latent=f"{getattr(prior, 'label', 'N(0,I)')} {s.latent_dim}-d")


@hookimpl
def register_variants(register):
    register(BetaVAE())
