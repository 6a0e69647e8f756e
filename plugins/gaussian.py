"""gaussian: the Gaussian VAE (Kingma & Welling 2014), reference 000.

q(z|x) = N(mu, diag sigma^2) from an MLP encoder, prior N(0, I), Bernoulli
likelihood on logits; reparameterised single-sample ELBO with the closed-form
KL from torch.distributions.
"""

from vaebench import hookimpl
from vaebench.distributions import StandardNormalPrior
from vaebench.models import GaussianVAE
from vaebench.objectives import ELBO
from vaebench.variant import BuildContext, Recipe, Variant


class Gaussian(Variant):
    name = "gaussian"
    description = "Gaussian VAE: MLP encoder to (mu, log sigma^2), prior N(0, I), reparameterised ELBO"
    reference = "Kingma & Welling 2014 (arXiv:1312.6114); shared/reference/000"

    def build(self, context: BuildContext) -> Recipe:
        s = context.settings
        prior = StandardNormalPrior(s.latent_dim)
        model = GaussianVAE(context.x_dim, s.hidden, s.latent_dim, prior, s.likelihood, context.n_classes)
        return Recipe(model, ELBO(), latent=f"N(0,I) {s.latent_dim}-d")


@hookimpl
def register_variants(register):
    register(Gaussian())
