"""conditional: the conditional VAE (reference 001, part B).

The decoder (and by default the encoder) gets [z, onehot(y)]. The KL weight
beta is an option (1 in matched runs). Metrics report -log p(x|y) and the
marginal -log sum_y p(y) p(x|y); the pictures include one row per class.
"""

import torch

from vaebench import hookimpl
from vaebench.distributions import StandardNormalPrior
from vaebench.models import GaussianVAE
from vaebench.objectives import ELBO, WeightedKL
from vaebench.schedules import Constant
from vaebench.variant import BuildContext, Recipe, Variant


class ConditionalVAE(GaussianVAE):
    group_name = "class"

    @torch.no_grad()
    def samples_by_group(self, per_group: int) -> torch.Tensor:
        """Probability images [classes, per_group, D]: the same z's decoded with every label."""
        z = self.prior.sample(per_group)
        rows = [self.likelihood(z, torch.full((per_group,), c, device=z.device)).mean for c in range(self.n_classes)]
        return torch.stack(rows)


class Conditional(Variant):
    name = "conditional"
    description = "conditional VAE: encoder and decoder get onehot(y); NLL as log p(x|y) and marginal log p(x)"
    reference = "Sohn et al. 2015; shared/reference/001"
    options = {"beta": 1.0, "condition_encoder": True}

    def build(self, context: BuildContext) -> Recipe:
        s, o = context.settings, context.options
        model = ConditionalVAE(
            context.x_dim, s.hidden, s.latent_dim, StandardNormalPrior(s.latent_dim), s.likelihood, context.n_classes,
            condition_encoder=o["condition_encoder"], condition_decoder=True,
        )
        objective = ELBO() if o["beta"] == 1.0 else WeightedKL(Constant(o["beta"]))
        return Recipe(model, objective, latent=f"N(0,I) {s.latent_dim}-d given y")


@hookimpl
def register_variants(register):
    register(Conditional())
