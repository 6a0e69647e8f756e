"""bernoulli-sfe: a VAE with Bernoulli latent bits trained with the score-function estimator.

q(z|x) = Bernoulli(sigmoid(logits)) over ``bits`` latent bits (64 as in
reference 000), prior Bernoulli(0.5), exact KL = D log 2 - H(q). The encoder's
gradient is (log p(x|z) - b) grad log q(z|x) with b the running average of the
reconstruction term over all previous updates; no reparameterisation and no
straight-through. As in the reference, the encoder's gradient (score function plus
the exact KL's) and the decoder's gradient are clipped at norm 5 each, separately: a
joint clip would let the score-function gradient's large norm shrink the decoder's
gradient too.
"""

from pydantic import BaseModel, Field
from torch.distributions import Bernoulli, Independent

from vaebench import hookimpl
from vaebench.components import OPTIONS_CONFIG
from vaebench.distributions import BernoulliPrior
from vaebench.models import LatentVariableModel, mlp
from vaebench.objectives import ScoreFunctionELBO
from vaebench.variant import BuildContext, Recipe, Variant


class BernoulliLatentVAE(LatentVariableModel):
    def __init__(self, x_dim, hidden, bits, likelihood="bernoulli", n_classes=10, activation="relu"):
        super().__init__(likelihood, n_classes)
        self.encoder = mlp([x_dim, *hidden, bits], activation)
        self.decoder = mlp([bits, *reversed(hidden), x_dim], activation)
        self.prior = BernoulliPrior(bits)

    def posterior(self, x, y=None, index=None):
        return Independent(Bernoulli(logits=self.encoder(x)), 1)

    def decode(self, z, y=None):
        return self.decoder(z)


class Options(BaseModel):
    model_config = OPTIONS_CONFIG
    bits: int = Field(64, ge=1, description="latent bits")
    grad_clip: float = Field(5.0, ge=0, description="max gradient norm of the encoder and of the decoder, each (0: no clipping)")


class BernoulliSFE(Variant):
    name = "bernoulli-sfe"
    description = "Bernoulli-latent VAE, score-function gradient with a running-average baseline"
    reference = "Williams 1992 (REINFORCE); Mnih & Gregor 2014; shared/reference/000"
    options = Options

    def build(self, context: BuildContext) -> Recipe:
        s, o = context.settings, context.options
        model = BernoulliLatentVAE(context.x_dim, s.hidden, o["bits"], s.likelihood, context.n_classes, s.activation)
        clip = {"encoder": o["grad_clip"], "decoder": o["grad_clip"]} if o["grad_clip"] > 0 else None
        return Recipe(
            model, ScoreFunctionELBO(), latent=f"Bernoulli(0.5) {o['bits']} bits", grad_clip=clip,
            note=f"encoder and decoder gradients clipped at norm {o['grad_clip']:g} each" if clip else "no gradient clipping",
        )


@hookimpl
def register_variants(register):
    register(BernoulliSFE())

