"""gumbel-capacity: JointVAE, a continuous z plus a categorical c with capacity control.

q(z|x) q(c|x) with c over K = number of classes and a uniform prior. Training
draws c with torch's RelaxedOneHotCategorical (stable for extreme logits) and
minimises, per image, -E log p(x|z,c) + gamma |KL_z - C_z| + gamma |KL_c - C_c|
with C_z, C_c rising linearly over the budget. Values (per image, from the
JointVAE paper rather than the lab's batch-summed beta = 20, C = 100 for
batches of 128, about 0.8 nats per image): gamma = 30, C_z -> 5 nats,
C_c -> min(5, log K) nats, temperature 0.67. ``capacity=off`` trains the plain
relaxed ELBO, to show the categorical's collapse. NMI of argmax q(c|x) on the
validation split is logged every epoch.
"""

import math

import torch
from sklearn.metrics import normalized_mutual_info_score
from torch.distributions import OneHotCategorical

from vaebench import hookimpl
from vaebench.distributions import Concatenated, JointPrior
from vaebench.models import LatentVariableModel, gaussian_from, mlp
from vaebench.objectives import CapacityELBO
from vaebench.schedules import LinearRamp
from vaebench.variant import BuildContext, Recipe, Variant


class JointVAE(LatentVariableModel):
    group_name = "category"

    def __init__(self, x_dim, hidden, latent_dim, categories, likelihood="bernoulli", n_classes=10):
        super().__init__(likelihood, n_classes)
        self.latent_dim, self.categories = latent_dim, categories
        self.encoder = mlp([x_dim, *hidden, 2 * latent_dim + categories])
        self.decoder = mlp([latent_dim + categories, *reversed(hidden), x_dim])
        self.prior = JointPrior(latent_dim, categories)

    def posterior(self, x, y=None, index=None):
        out = self.encoder(x)
        gaussian, logits = out[..., : 2 * self.latent_dim], out[..., 2 * self.latent_dim :]
        return Concatenated([gaussian_from(gaussian), OneHotCategorical(logits=logits)])

    def decode(self, z, y=None):
        return self.decoder(z)

    def cluster(self, x, y=None):
        return self.posterior(x).parts[1].logits.argmax(-1)

    @torch.no_grad()
    def samples_by_group(self, per_group: int) -> torch.Tensor:
        """Probability images [K, per_group, D]: the same continuous z's with every category."""
        z = self.prior.normal.sample(per_group)
        eye = torch.eye(self.categories, device=z.device)
        rows = [self.likelihood(torch.cat([z, eye[c].expand(per_group, -1)], dim=-1)).mean for c in range(self.categories)]
        return torch.stack(rows)


@torch.no_grad()
def validation_nmi(model, data) -> dict:
    model.eval()
    clusters = model.cluster(data.val.x).cpu().numpy()
    return {"nmi": float(normalized_mutual_info_score(data.val.y.cpu().numpy(), clusters))}


class GumbelCapacity(Variant):
    name = "gumbel-capacity"
    description = "JointVAE: Gaussian z + Gumbel-softmax categorical c, capacity-controlled KLs; NMI per epoch"
    reference = "Dupont 2018, JointVAE (arXiv:1804.00104), eq. 7; Jang et al. 2017; shared/reference/001"
    options = {"capacity": True, "gamma": 30.0, "capacity_z": 5.0, "capacity_c": 5.0, "temperature": 0.67, "ramp_fraction": 1.0, "ramp_fraction_c": 1.0}

    def build(self, context: BuildContext) -> Recipe:
        s, o, k = context.settings, context.options, context.n_classes
        model = JointVAE(context.x_dim, s.hidden, s.latent_dim, k, s.likelihood, context.n_classes)
        objective = CapacityELBO(
            gamma=o["gamma"],
            c_z=LinearRamp(o["capacity_z"], o["ramp_fraction"]),
            c_c=LinearRamp(min(o["capacity_c"], math.log(k)), o["ramp_fraction_c"]),
            temperature=o["temperature"],
            capacity=o["capacity"],
        )
        return Recipe(model, objective, latent=f"N(0,I) {s.latent_dim}-d x Cat({k})", epoch_metrics=validation_nmi)


@hookimpl
def register_variants(register):
    register(GumbelCapacity())
