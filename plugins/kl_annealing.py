"""kl-annealing: the Gaussian VAE trained with a KL warm-up (reference 004).

The KL weight is 0 for the warm-up epochs, then rises linearly to 1 over the
annealing epochs (``KLWarmup``); the weight in effect is logged each epoch as
``kl_weight``. Evaluation, as for every variant, is at beta = 1.
"""

from vaebench import hookimpl
from vaebench.distributions import StandardNormalPrior
from vaebench.models import GaussianVAE
from vaebench.objectives import WeightedKL
from vaebench.schedules import KLWarmup
from vaebench.variant import BuildContext, Recipe, Variant


class KLAnnealing(Variant):
    name = "kl-annealing"
    description = "Gaussian VAE with KL weight 0 for warm-up epochs, then linear to 1 (against posterior collapse)"
    reference = "Bowman et al. 2016 (arXiv:1511.06349); shared/reference/004"
    # fractions of the budget's epochs, rounded to whole epochs
    options = {"warmup_fraction": 0.1, "anneal_fraction": 0.3}

    def schedule(self, epochs: int, options: dict) -> KLWarmup:
        warmup = int(round(options["warmup_fraction"] * epochs))
        anneal = max(1, int(round(options["anneal_fraction"] * epochs)))
        return KLWarmup(warmup_epochs=warmup, anneal_epochs=anneal)

    def build(self, context: BuildContext) -> Recipe:
        s = context.settings
        model = GaussianVAE(context.x_dim, s.hidden, s.latent_dim, StandardNormalPrior(s.latent_dim), s.likelihood, context.n_classes)
        return Recipe(model, WeightedKL(self.schedule(context.epochs, context.options)), latent=f"N(0,I) {s.latent_dim}-d")


@hookimpl
def register_variants(register):
    register(KLAnnealing())
