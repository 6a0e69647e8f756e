"""ae-gmm: a deterministic autoencoder plus a GaussianMixture fitted on its codes (reference 000).

Training minimises the reconstruction term only (no KL). After training,
sklearn's GaussianMixture (20 full-covariance components by default) is fitted
on the codes of the training split and becomes the prior p(z); samples are
GMM -> decoder. NMI uses the most responsible GMM component (the model's
discrete latent).

The model "GMM prior + decoder" has a likelihood p(x) = E_p(z) p(x|z) like any
other row, and any proposal with full support gives a valid importance-sampling
estimate of it and a valid ELBO. So that the row measures the model and not its
proposal, likelihoods use a defensive mixture (Hesterberg 1995)

    r(z|x) = w N(enc(x), diag (s sigma)^2) + (1 - w) p_GMM(z),

sigma the per-dimension std of the training codes, with (w, s) chosen before
evaluation on a fixed subset of the validation split: the pair with the highest
importance-sampled log-likelihood, among ``PROPOSAL_SCALES`` x ``PROPOSAL_WEIGHTS``
and the prior alone (w = 0). A poor encoder therefore costs little: the prior
alone is one of the candidates, and any mixture's weights are at most
p(x|z) / (1 - w).
"""


import torch
from pydantic import BaseModel, Field
from torch.distributions import Independent, Normal

from vaebench import hookimpl
from vaebench.components import OPTIONS_CONFIG
from vaebench.distributions import GaussianMixturePrior
from vaebench.distributions.proposals import DefensiveMixture
from vaebench.models import LatentVariableModel, mlp
from vaebench.objectives import Reconstruction
from vaebench.execution.validation import ValidationReconstruction
from vaebench.variant import BuildContext, Recipe, Variant

PROPOSAL_SCALES = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)  # s, in units of the training codes' std
PROPOSAL_WEIGHTS = (0.5, 0.9)  # w, the encoder-centred Gaussian's share
SELECTION_IMAGES = 500  # validation images the proposal is chosen on
SELECTION_SAMPLES = 500  # importance samples per image while choosing (at most the run's K)
SELECTION_SEED = 2024


class AutoencoderGMM(LatentVariableModel):
    def __init__(self, x_dim, hidden, latent_dim, components, likelihood="bernoulli", n_classes=10, activation="relu"):
        super().__init__(likelihood, n_classes)
        self.encoder = mlp([x_dim, *hidden, latent_dim], activation)
        self.decoder = mlp([latent_dim, *reversed(hidden), x_dim], activation)
        self.prior = GaussianMixturePrior(latent_dim, components)
        self.register_buffer("code_std", torch.ones(latent_dim))  # per-dimension std of the training codes
        # the proposal in use: weight 1 is the encoder-centred Gaussian alone, 0 the prior alone
        self.proposal_weight, self.proposal_scale = 1.0, 1.0

    def encode(self, x):
        return self.encoder(x)

    def posterior(self, x, y=None, index=None):
        """The encoder-centred Gaussian N(enc(x), diag (s sigma)^2); its mean is the code."""
        return Independent(Normal(self.encode(x), self.proposal_scale * self.code_std), 1)

    def proposal(self, x, y=None, index=None):
        """What likelihood metrics sample from: the defensive mixture chosen on validation."""
        if self.proposal_weight >= 1.0:
            return self.posterior(x)
        prior = self.prior.distribution()
        if self.proposal_weight <= 0.0:
            return prior.expand(torch.Size([x.shape[0]]))
        return DefensiveMixture(self.posterior(x), prior, self.proposal_weight)

    @property
    def proposal_label(self) -> str:
        if self.proposal_weight <= 0.0:
            return "GMM prior (plain Monte Carlo), chosen on validation"
        return (
            f"{self.proposal_weight:g} N(enc(x), diag ({self.proposal_scale:g} sigma_codes)^2) "
            f"+ {1 - self.proposal_weight:g} GMM prior, chosen on validation"
        )

    def decode(self, z, y=None):
        return self.decoder(z)

    def cluster(self, x, y=None):
        return self.prior.component(self.encode(x))

    def prepare_evaluation(self, data, samples: int) -> dict:
        """Choose (w, s) on a fixed validation subset; return what was chosen and how."""
        from vaebench.evaluation.importance import importance_log_likelihood

        val = data.val
        generator = torch.Generator().manual_seed(SELECTION_SEED)
        pick = torch.randperm(len(val), generator=generator)[:SELECTION_IMAGES].to(val.x.device)
        x = val.x[pick]
        k = min(samples, SELECTION_SAMPLES)
        candidates = [(0.0, 1.0)] + [(w, s) for w in PROPOSAL_WEIGHTS for s in PROPOSAL_SCALES]
        scores = {}
        for weight, scale in candidates:
            self.proposal_weight, self.proposal_scale = weight, scale
            torch.manual_seed(SELECTION_SEED)
            scores[weight, scale] = importance_log_likelihood(self, x, None, None, k).mean().item()
        best = max(scores, key=scores.get)
        self.proposal_weight, self.proposal_scale = best
        return {
            "proposal_weight": best[0],
            "proposal_scale": best[1] if best[0] > 0 else None,
            "proposal_selection": f"best of {len(candidates)} proposals by IS log-likelihood on {len(x)} validation images, K = {k}",
        }


class Options(BaseModel):
    model_config = OPTIONS_CONFIG
    components: int = Field(20, ge=1, description="GaussianMixture components fitted on the training codes")


class AEGMM(Variant):
    name = "ae-gmm"
    description = "deterministic autoencoder (reconstruction only) + sklearn GaussianMixture on its codes"
    reference = "shared/reference/000 (last exercise); Ghosh et al. 2020 (RAE, ex-post density estimation)"
    options = Options

    def build(self, context: BuildContext) -> Recipe:
        s, o = context.settings, context.options
        model = AutoencoderGMM(context.x_dim, s.hidden, s.latent_dim, o["components"], s.likelihood, context.n_classes, s.activation)

        @torch.no_grad()
        def fit_gmm(model, data) -> dict:
            from sklearn.mixture import GaussianMixture  # imported here: sklearn is slow to import

            model.eval()
            codes = torch.cat([model.encode(data.split("train").x[i : i + 4096]) for i in range(0, len(data.train), 4096)])
            codes_np = codes.double().cpu().numpy()
            gmm = GaussianMixture(n_components=o["components"], covariance_type="full", reg_covar=1e-4, random_state=0)
            gmm.fit(codes_np)
            model.prior.fill_from(gmm)
            model.code_std.copy_(codes.std(dim=0).clamp_min(1e-3))
            return {"gmm_components": o["components"], "gmm_mean_log_density_train_codes": float(gmm.score(codes_np))}

        return Recipe(
            model, Reconstruction(), latent=f"deterministic {s.latent_dim}-d + GMM({o['components']})", post_training=fit_gmm,
            validation=ValidationReconstruction(),  # no prior before the GMM fit, so no ELBO to validate on
            note="likelihoods use a defensive mixture of an encoder-centred Gaussian and the GMM prior, chosen on validation",
        )


@hookimpl
def register_variants(register):
    register(AEGMM())
