"""mog-prior: a Gaussian VAE whose prior is a learnable mixture of K Gaussians (reference 003).

The prior is torch's MixtureSameFamily over K diagonal Gaussians (K = 16 by
default); its means, variances and weights are trained with the model. KL has
no closed form, so the ELBO uses the Monte-Carlo KL log q(z|x) - log p(z).
"""

from vaebench import hookimpl
from vaebench.distributions import MixturePrior
from vaebench.models import GaussianVAE
from vaebench.objectives import ELBO
from vaebench.variant import BuildContext, Recipe, Variant


class MoGPrior(Variant):
    name = "mog-prior"
    description = "Gaussian VAE with a learnable mixture-of-Gaussians prior (MixtureSameFamily), Monte-Carlo KL"
    reference = "Tomczak & Welling 2018 (VampPrior paper's MoG baseline); shared/reference/003"
    options = {"components": 16}

    def build(self, context: BuildContext) -> Recipe:
        s, k = context.settings, context.options["components"]
        model = GaussianVAE(context.x_dim, s.hidden, s.latent_dim, MixturePrior(s.latent_dim, k), s.likelihood, context.n_classes)
        return Recipe(model, ELBO(), latent=f"MoG(K={k}) {s.latent_dim}-d")


@hookimpl
def register_variants(register):
    register(MoGPrior())
