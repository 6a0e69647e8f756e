"""ae-gmm: a deterministic autoencoder plus a GaussianMixture fitted on its codes (reference 000).

Training minimises the reconstruction term only (no KL). After training,
sklearn's GaussianMixture (20 full-covariance components by default) is fitted
on the codes of the training split and becomes the prior p(z); samples are
GMM -> decoder. For likelihoods the proposal is q(z|x) = N(enc(x), diag s^2),
with s = ``proposal_scale`` x the per-dimension standard deviation of the
training codes. Any proposal with full support gives a valid importance
sampling estimate of log p(x) = log E_p(z) p(x|z) and a valid ELBO, so both
columns are true bounds/estimates for the model "GMM prior + decoder".
NMI uses the most responsible GMM component (the model's discrete latent).
"""

import torch
from sklearn.mixture import GaussianMixture
from torch.distributions import Independent, Normal

from vaebench import hookimpl
from vaebench.distributions import GaussianMixturePrior
from vaebench.models import LatentVariableModel, mlp
from vaebench.objectives import Reconstruction
from vaebench.variant import BuildContext, Recipe, Variant


class AutoencoderGMM(LatentVariableModel):
    def __init__(self, x_dim, hidden, latent_dim, components, likelihood="bernoulli", n_classes=10):
        super().__init__(likelihood, n_classes)
        self.encoder = mlp([x_dim, *hidden, latent_dim])
        self.decoder = mlp([latent_dim, *reversed(hidden), x_dim])
        self.prior = GaussianMixturePrior(latent_dim, components)
        self.register_buffer("proposal_scale", torch.ones(latent_dim))
        self.proposal = "N(enc(x), diag s^2), s = proposal_scale x std of training codes"

    def encode(self, x):
        return self.encoder(x)

    def posterior(self, x, y=None, index=None):
        return Independent(Normal(self.encode(x), self.proposal_scale), 1)

    def decode(self, z, y=None):
        return self.decoder(z)

    def cluster(self, x, y=None):
        return self.prior.component(self.encode(x))


class AEGMM(Variant):
    name = "ae-gmm"
    description = "deterministic autoencoder (reconstruction only) + sklearn GaussianMixture on its codes"
    reference = "shared/reference/000 (last exercise); Ghosh et al. 2020 (RAE, ex-post density estimation)"
    options = {"components": 20, "proposal_scale": 0.1}

    def build(self, context: BuildContext) -> Recipe:
        s, o = context.settings, context.options
        model = AutoencoderGMM(context.x_dim, s.hidden, s.latent_dim, o["components"], s.likelihood, context.n_classes)

        @torch.no_grad()
        def fit_gmm(model, data) -> dict:
            model.eval()
            codes = torch.cat([model.encode(data.split("train").x[i : i + 4096]) for i in range(0, len(data.train), 4096)])
            codes_np = codes.double().cpu().numpy()
            gmm = GaussianMixture(n_components=o["components"], covariance_type="full", reg_covar=1e-4, random_state=0)
            gmm.fit(codes_np)
            model.prior.fill_from(gmm)
            model.proposal_scale.copy_(o["proposal_scale"] * codes.std(dim=0).clamp_min(1e-3))
            return {"gmm_components": o["components"], "gmm_mean_log_density_train_codes": float(gmm.score(codes_np))}

        return Recipe(model, Reconstruction(), latent=f"deterministic {s.latent_dim}-d + GMM({o['components']})", post_training=fit_gmm)


@hookimpl
def register_variants(register):
    register(AEGMM())
