"""kl-annealing: the Gaussian VAE trained with a KL warm-up (reference 004).

The KL weight is 0 for the warm-up epochs, then rises linearly to 1 over the
annealing epochs (``KLWarmup``); the weight in effect is logged each epoch as
``kl_weight``. Evaluation, as for every variant, is at beta = 1.
"""

from pydantic import BaseModel, Field

from vaebench import hookimpl
from vaebench.components import OPTIONS_CONFIG
from vaebench.distributions import StandardNormalPrior
from vaebench.errors import UsageError
from vaebench.models import GaussianVAE
from vaebench.objectives import WeightedKL
from vaebench.schedules import KLWarmup
from vaebench.variant import BuildContext, Recipe, Variant


class Options(BaseModel):
    model_config = OPTIONS_CONFIG
    warmup_fraction: float = Field(0.1, ge=0, le=1, description="share of the epochs at KL weight 0")
    anneal_fraction: float = Field(0.3, ge=0, le=1, description="share of the epochs over which the weight rises to 1")


class KLAnnealing(Variant):
    name = "kl-annealing"
    description = "Gaussian VAE with KL weight 0 for warm-up epochs, then linear to 1 (against posterior collapse)"
    reference = "Bowman et al. 2016 (arXiv:1511.06349); shared/reference/004"
    options = Options  # fractions of the budget's epochs, rounded to whole epochs
    accepts_prior = True

    def schedule(self, epochs: int, options: dict) -> KLWarmup:
        warmup = int(round(options["warmup_fraction"] * epochs))
        anneal = max(1, int(round(options["anneal_fraction"] * epochs)))
        return KLWarmup(warmup_epochs=warmup, anneal_epochs=anneal)

    def build(self, context: BuildContext) -> Recipe:
        s = context.settings
        if context.epochs is None:
            raise UsageError("kl-annealing schedules its KL weight over epochs; give its runs an epoch budget, not --steps or --seconds")
        prior = context.prior or StandardNormalPrior(s.latent_dim)
        model = GaussianVAE(context.x_dim, s.hidden, s.latent_dim, prior, s.likelihood, context.n_classes, activation=s.activation, logvar_range=s.logvar_range)
        schedule = self.schedule(context.epochs, context.options)
        note = f"KL weight 0 for {schedule.warmup_epochs} epochs, then 1 after {schedule.warmup_epochs + schedule.anneal_epochs}"
        return Recipe(model, WeightedKL(schedule), latent=f"{getattr(prior, 'label', 'N(0,I)')} {s.latent_dim}-d", note=note)


@hookimpl
def register_variants(register):
    register(KLAnnealing())
