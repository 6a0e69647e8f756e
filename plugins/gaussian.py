"""gaussian: the Gaussian VAE (Kingma & Welling 2014), reference 000.

q(z|x) = N(mu, diag sigma^2) from an MLP encoder, prior N(0, I), Bernoulli
likelihood on logits; reparameterised single-sample ELBO with the closed-form
KL from torch.distributions. Its networks take any registered prior
(``--prior vampprior``) and objective (``--objective iwae``).
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
    accepts_prior = True
    accepts_objective = True

    def build(self, context: BuildContext) -> Recipe:
        s = context.settings
        prior = context.prior or StandardNormalPrior(s.latent_dim)
        model = GaussianVAE(context.x_dim, s.hidden, s.latent_dim, prior, s.likelihood, context.n_classes, activation=s.activation, logvar_range=s.logvar_range)
        latent = f"{getattr(prior, 'label', 'N(0,I)')} {s.latent_dim}-d"
        return Recipe(model, context.objective or ELBO(), latent=latent)


@hookimpl
def register_variants(register):
    register(Gaussian())
