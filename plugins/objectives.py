"""Built-in training objectives, registered through ``register_objectives`` exactly as a third party would.

Any variant that ``accepts_objective`` trains with them: ``--objective iwae --option iwae.k=5``.
"""

from pydantic import BaseModel, Field

from vaebench import hookimpl
from vaebench.components import OPTIONS_CONFIG, ObjectiveComponent
from vaebench.objectives import ELBO, IWAE


class TrueELBO(ObjectiveComponent):
    name = "elbo"
    description = "the reparameterised single-sample ELBO"
    reference = "Kingma & Welling 2014"

    def build(self, context):
        return ELBO()


class IWAEOptions(BaseModel):
    model_config = OPTIONS_CONFIG
    k: int = Field(5, ge=1, description="importance samples per image in the bound")


class ImportanceWeighted(ObjectiveComponent):
    name = "iwae"
    description = "the importance-weighted bound with k samples (k = 1 is the ELBO)"
    reference = "Burda et al. 2016 (arXiv:1509.00519)"
    options = IWAEOptions

    def build(self, context):
        return IWAE(context.options["k"])


@hookimpl
def register_objectives(register):
    register(TrueELBO())
    register(ImportanceWeighted())
