"""Built-in priors, registered through ``register_priors`` exactly as a third party would.

Any variant that ``accepts_prior`` builds its model around them: ``--prior vampprior``.
"""

from pydantic import BaseModel, Field

from vaebench import hookimpl
from vaebench.components import OPTIONS_CONFIG, PriorComponent
from vaebench.distributions import MixturePrior, StandardNormalPrior, VampPrior


class StandardNormal(PriorComponent):
    name = "standard-normal"
    description = "N(0, I) over the continuous latent"
    reference = "Kingma & Welling 2014"

    def build(self, context):
        return StandardNormalPrior(context.settings.latent_dim)


class MoGOptions(BaseModel):
    model_config = OPTIONS_CONFIG
    components: int = Field(16, ge=1, description="mixture components K")


class MoG(PriorComponent):
    name = "mog"
    description = "a learnable mixture of K diagonal Gaussians, trained with the model"
    reference = "Tomczak & Welling 2018 (their MoG baseline); shared/reference/003"
    options = MoGOptions

    def build(self, context):
        return MixturePrior(context.settings.latent_dim, context.options["components"])


class VampOptions(BaseModel):
    model_config = OPTIONS_CONFIG
    components: int = Field(500, ge=1, description="pseudo-inputs K")


class Vamp(PriorComponent):
    name = "vampprior"
    description = "VampPrior: a mixture of the encoder's posteriors at K learnable pseudo-inputs"
    reference = "Tomczak & Welling 2018 (arXiv:1705.07120)"
    options = VampOptions

    def build(self, context):
        return VampPrior(context.x_dim, context.options["components"])


@hookimpl
def register_priors(register):
    register(StandardNormal())
    register(MoG())
    register(Vamp())
