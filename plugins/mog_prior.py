"""mog-prior: a Gaussian VAE whose prior is a learnable mixture of K Gaussians (reference 003).

The prior is torch's MixtureSameFamily over K diagonal Gaussians (K = 16 by
default); its means, variances and weights are trained with the model. KL has
no closed form, so the ELBO uses the Monte-Carlo KL log q(z|x) - log p(z).
The same prior is registered on its own as ``mog`` for ``--prior mog``.
"""

from pydantic import BaseModel, Field

from vaebench import hookimpl
from vaebench.components import OPTIONS_CONFIG
from vaebench.distributions import MixturePrior
from vaebench.models import GaussianVAE
from vaebench.objectives import ELBO
from vaebench.variant import BuildContext, Recipe, Variant


class Options(BaseModel):
    model_config = OPTIONS_CONFIG
    components: int = Field(16, ge=1, description="mixture components K")


class MoGPrior(Variant):
    name = "mog-prior"
    description = "Gaussian VAE with a learnable mixture-of-Gaussians prior (MixtureSameFamily), Monte-Carlo KL"
    reference = "Tomczak & Welling 2018 (VampPrior paper's MoG baseline); shared/reference/003"
    options = Options
    accepts_objective = True

    def build(self, context: BuildContext) -> Recipe:
        s, k = context.settings, context.options["components"]
        prior = MixturePrior(s.latent_dim, k)
        model = GaussianVAE(context.x_dim, s.hidden, s.latent_dim, prior, s.likelihood, context.n_classes, activation=s.activation, logvar_range=s.logvar_range)
        return Recipe(model, context.objective or ELBO(), latent=f"MoG(K={k}) {s.latent_dim}-d")


@hookimpl
def register_variants(register):
    register(MoGPrior())
