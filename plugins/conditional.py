"""conditional: the conditional VAE (Sohn et al. 2015; reference 001, part B).

The decoder gets [z, onehot(y)], as in reference 001; by default the encoder gets
[x, onehot(y)] too, so the proposal is q(z|x,y) (``condition_encoder=off`` gives
the lab's unconditioned encoder, q(z|x)). The KL weight beta is an option: 1 here,
so that the row trains on the true ELBO like the others; the lab's ``train_C``
uses beta = 10. The table note states both choices.

Like every row, ``neg_elbo`` bounds -log p(x): -ELBO(x|y) - log p(y), with p(y)
the training label frequencies, and ``is_nll`` estimates the marginal
-log sum_y p(y) p(x|y). The conditional values are ``neg_elbo_given_y`` and
``is_nll_given_y``. The pictures include one row of samples per class.
"""

import torch
from pydantic import BaseModel, Field

from vaebench import hookimpl
from vaebench.components import OPTIONS_CONFIG
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


class Options(BaseModel):
    model_config = OPTIONS_CONFIG
    beta: float = Field(1.0, gt=0, description="KL weight while training (evaluation is always at beta = 1)")
    condition_encoder: bool = Field(True, description="the encoder gets onehot(y) too: q(z|x,y)")


class Conditional(Variant):
    name = "conditional"
    description = "conditional VAE: encoder and decoder get onehot(y); NLL as log p(x|y) and marginal log p(x)"
    reference = "Sohn et al. 2015; shared/reference/001"
    options = Options

    def build(self, context: BuildContext) -> Recipe:
        s, o = context.settings, context.options
        model = ConditionalVAE(
            context.x_dim, s.hidden, s.latent_dim, StandardNormalPrior(s.latent_dim), s.likelihood, context.n_classes,
            condition_encoder=o["condition_encoder"], condition_decoder=True, activation=s.activation, logvar_range=s.logvar_range,
        )
        objective = ELBO() if o["beta"] == 1.0 else WeightedKL(Constant(o["beta"]))
        encoder = "encoder and decoder get onehot(y)" if o["condition_encoder"] else "decoder gets onehot(y), as in reference 001"
        note = f"{encoder}; beta = {o['beta']:g} (reference 001 trains with beta = 10)"
        return Recipe(model, objective, latent=f"N(0,I) {s.latent_dim}-d given y", note=note)


@hookimpl
def register_variants(register):
    register(Conditional())
