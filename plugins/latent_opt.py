"""latent-opt: no encoder; a learnable (mu_i, log sigma^2_i) for every training example.

The decoder and the per-example table are trained jointly on the ELBO, the
table at 10x the decoder's learning rate (reference 002), initialised with
mu ~ N(0, I) and log sigma^2 = 0. For unseen examples (validation, test),
``prepare_inference`` fits a fresh table with the decoder frozen
(``inference_steps`` Adam steps at the inference learning rate), and metrics then
evaluate the ELBO and IS-NLL with it, so the fit must converge or the row measures
the fit, not the model.

The inference learning rate is chosen before evaluation on the validation split,
never on test: each of ``INFERENCE_LRS`` fits q for ``SELECTION_IMAGES`` fixed
validation images, and the one with the best ELBO there is used for every split
(``inference_lr_selection`` in the row says which). ``inference_lr`` fixes it instead.

The row's ``train - test`` column is n/a: the training images' q is the table trained
with the decoder, the test images' a fit with the decoder frozen, so their difference
would measure the two fits, not overfitting.

Its row is a different model (a decoder trained without an encoder), not a
measurement of the amortisation gap: the ``gaps`` metric measures that gap on each
amortised variant with its own decoder (Cremer et al. 2018).
"""

import torch
from pydantic import BaseModel, Field
from torch import nn

from vaebench import hookimpl
from vaebench.components import OPTIONS_CONFIG
from vaebench.distributions import StandardNormalPrior
from vaebench.models import LatentVariableModel, mlp
from vaebench.objectives import ELBO, elbo_parts
from vaebench.variant import BuildContext, Recipe, Variant
from torch.distributions import Independent, Normal


class LatentTable(nn.Module):
    """(mu, log sigma^2) for each of ``n`` examples."""

    def __init__(self, n: int, dim: int, init_std: float = 1.0):
        super().__init__()
        self.mu = nn.Parameter(torch.randn(n, dim) * init_std)
        self.logvar = nn.Parameter(torch.zeros(n, dim))

    def forward(self, index):
        return Independent(Normal(self.mu[index], torch.exp(0.5 * self.logvar[index])), 1)


INFERENCE_LRS = (0.01, 0.03, 0.1, 0.3, 1.0)  # Adam's learning rate for fitting unseen images' q, chosen on validation
SELECTION_IMAGES = 500
SELECTION_SEED = 2024


class LatentOptimisation(LatentVariableModel):
    amortized = False
    train_q_differs = "the training images' q is the table trained with the decoder, other splits' a fit with the decoder frozen"

    def __init__(self, x_dim, hidden, latent_dim, n_train, likelihood="bernoulli", n_classes=10, inference_lr=None, inference_steps=100,
                 activation="relu"):
        """``inference_lr`` None: chosen on validation before evaluation (:meth:`prepare_evaluation`)."""
        super().__init__(likelihood, n_classes)
        self.choose_inference_lr = inference_lr is None
        inference_lr = INFERENCE_LRS[2] if inference_lr is None else inference_lr  # until chosen
        self.decoder = mlp([latent_dim, *reversed(hidden), x_dim], activation)
        self.latents = LatentTable(n_train, latent_dim)
        self.prior = StandardNormalPrior(latent_dim)
        self.latent_dim, self.inference_lr, self.inference_steps = latent_dim, inference_lr, inference_steps
        self._fitted: dict[str, LatentTable] = {}
        self._use(self.latents)

    def _use(self, table: "LatentTable") -> None:
        """Point posterior() at ``table`` without registering it as a second submodule."""
        object.__setattr__(self, "_active", table)

    def train(self, mode: bool = True):
        if mode:  # the decoder changes again: fitted posteriors are stale
            self._fitted.clear()
            self._use(self.latents)
        return super().train(mode)

    def posterior(self, x, y=None, index=None):
        if index is None:
            raise ValueError("latent-opt has no encoder: posterior() needs the examples' index")
        return self._active(index)

    def decode(self, z, y=None):
        return self.decoder(z)

    def prepare_inference(self, split, x, y):
        if split == "train":
            self._use(self.latents)
            return
        if split not in self._fitted:
            self._fitted[split] = self.fit_posteriors(x, y)
        self._use(self._fitted[split])

    def prepare_evaluation(self, data, samples: int) -> dict:
        """Choose the inference learning rate on a fixed validation subset (unless fixed); say how."""
        if not self.choose_inference_lr:
            return {"inference_lr": self.inference_lr, "inference_lr_selection": "fixed by the inference_lr option"}
        val = data.val
        pick = torch.randperm(len(val), generator=torch.Generator().manual_seed(SELECTION_SEED))[:SELECTION_IMAGES].to(val.x.device)
        x, index = val.x[pick], torch.arange(len(pick), device=val.x.device)
        elbos = {}
        for lr in INFERENCE_LRS:
            self.inference_lr = lr
            table = self.fit_posteriors(x, None)
            previous = self._active
            self._use(table)
            torch.manual_seed(SELECTION_SEED)
            elbos[lr] = elbo_parts(self, x, None, index, reparameterize=False).elbo.mean().item()
            self._use(previous)
        self.inference_lr = max(elbos, key=elbos.get)
        self._fitted.clear()
        return {"inference_lr": self.inference_lr,
                "inference_lr_selection": f"best of {len(INFERENCE_LRS)} learning rates ({', '.join(f'{lr:g}' for lr in INFERENCE_LRS)}) "
                                          f"by the ELBO of q fitted for {len(x)} validation images, {self.inference_steps} steps"}

    def fit_posteriors(self, x, y, batch: int = 4096) -> LatentTable:
        """Maximise the ELBO of each example over its own (mu, log sigma^2), the decoder frozen."""
        with torch.inference_mode(False), torch.enable_grad():
            table = LatentTable(len(x), self.latent_dim, init_std=0.0).to(x.device)
            frozen = [p for p in self.decoder.parameters() if p.requires_grad]
            for p in frozen:
                p.requires_grad_(False)
            previous = self._active
            self._use(table)
            try:
                opt = torch.optim.Adam(table.parameters(), lr=self.inference_lr)
                x = x.clone()  # x may be an inference tensor; autograd needs a normal one
                for _ in range(self.inference_steps):
                    opt.zero_grad(set_to_none=True)
                    for start in range(0, len(x), batch):
                        index = torch.arange(start, min(len(x), start + batch), device=x.device)
                        parts = elbo_parts(self, x[index], None, index)
                        (-parts.elbo.sum() / len(x)).backward()
                    opt.step()
            finally:
                self._use(previous)
                for p in frozen:
                    p.requires_grad_(True)
            table.requires_grad_(False)
        return table


class Options(BaseModel):
    model_config = OPTIONS_CONFIG
    latent_lr_multiplier: float = Field(10.0, gt=0, description="the latent table's learning rate, in units of the decoder's")
    inference_steps: int = Field(100, ge=1, description="Adam steps fitting q for unseen images, decoder frozen")
    inference_lr: float | None = Field(None, gt=0, description="Adam's learning rate fitting q for unseen images (default: "
                                       f"the best of {', '.join(f'{lr:g}' for lr in INFERENCE_LRS)} on validation images)")


class LatentOpt(Variant):
    name = "latent-opt"
    description = "latent optimisation: no encoder, per-example (mu, log sigma^2) at 10x lr; test q fitted with decoder frozen"
    reference = "Bojanowski et al. 2018 (GLO), Hoffman et al. 2013 (SVI); shared/reference/002"
    options = Options

    def build(self, context: BuildContext) -> Recipe:
        s, o = context.settings, context.options
        model = LatentOptimisation(
            context.x_dim, s.hidden, s.latent_dim, context.n_train, s.likelihood, context.n_classes,
            inference_lr=o["inference_lr"], inference_steps=o["inference_steps"], activation=s.activation,
        )

        def groups(lr):
            return [
                {"params": list(model.decoder.parameters()), "lr": lr},
                {"params": list(model.latents.parameters()), "lr": lr * o["latent_lr_multiplier"]},
            ]

        return Recipe(
            model, ELBO(), latent=f"N(0,I) {s.latent_dim}-d, per-example q", param_groups=groups,
            validation=None,
            no_validation_reason="validating needs a per-example fit of q on the validation split every epoch",
            note=(
                f"no encoder: a learnable q per training image at {o['latent_lr_multiplier']:g}x the decoder's lr; "
                f"test q fitted per image ({o['inference_steps']} Adam steps, decoder frozen, "
                f"{'lr chosen on validation' if o['inference_lr'] is None else 'lr %g' % o['inference_lr']}); last epoch evaluated"
            ),
        )


@hookimpl
def register_variants(register):
    register(LatentOpt())
