"""Amortisation and approximation gaps (Cremer, Li & Duvenaud 2018).

On a fixed subset of the test split, with the decoder held fixed:

* ``amortization_gap`` = -ELBO(amortised q) - -ELBO(optimised q): what the encoder
  loses against the best q of the same family fitted to each image on its own;
* ``approximation_gap`` = -ELBO(optimised q) - IS-NLL: what the family itself
  (a diagonal Gaussian) loses against the true posterior.

The optimised q starts at the encoder's output and is fitted per image by Adam on
the reparameterised ELBO (``GAP_STEPS`` steps of ``GAP_STEP_SAMPLES`` samples, the
learning rate decayed to 0). Both ELBOs are averaged over ``GAP_ELBO_SAMPLES``
samples per image, and the IS-NLL of the subset uses the optimised q as proposal
with the run's K. The metric applies to amortised models whose posterior is a
diagonal Gaussian; for the others it says n/a and why.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Independent, Normal

from vaebench.distributions.gaussian_mixture import is_diagonal_gaussian
from vaebench.evaluation.context import Column, EvalContext
from vaebench.models import variational_of
from vaebench.objectives import kl_to_prior

GAP_IMAGES = 500
GAP_STEPS = 300
GAP_STEP_SAMPLES = 4
GAP_LR = 3e-2
GAP_ELBO_SAMPLES = 100
GAP_SEED = 77


def neg_elbo_estimate(model, q, x, y, samples: int) -> torch.Tensor:
    """-ELBO per image, averaged over ``samples`` draws from ``q`` (the KL in closed form where it exists)."""
    prior = model.prior.distribution()
    z = q.rsample((samples,))  # [S, B, D]
    log_likelihood = model.likelihood(z, y).log_prob(x)
    kl = kl_to_prior(q, prior, z)
    return (kl - log_likelihood).mean(0) if kl.dim() == 2 else kl - log_likelihood.mean(0)


def optimise_posteriors(model, q0, x, y, steps: int = GAP_STEPS, samples: int = GAP_STEP_SAMPLES, lr: float = GAP_LR):
    """Per-image diagonal Gaussians, started at ``q0`` and fitted to the ELBO with the model fixed."""
    loc = q0.base_dist.loc.detach().clone().requires_grad_(True)
    log_scale = q0.base_dist.scale.detach().log().clone().requires_grad_(True)
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        opt = torch.optim.Adam([loc, log_scale], lr=lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            q = Independent(Normal(loc, log_scale.exp()), 1)
            neg_elbo_estimate(model, q, x, y, samples).sum().backward()
            opt.step()
            schedule.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return Independent(Normal(loc.detach(), log_scale.detach().exp()), 1)


class FixedProposal(nn.Module):
    """``model`` with a given per-image q as its proposal (importance sampling with the optimised q)."""

    def __init__(self, model, q):
        super().__init__()
        self.model, self.q = model, q
        self.prior = model.prior

    def proposal(self, x, y=None, index=None):
        loc, scale = self.q.base_dist.loc[index], self.q.base_dist.scale[index]
        return Independent(Normal(loc, scale), 1)

    posterior = proposal

    def likelihood(self, z, y=None):
        return self.model.likelihood(z, y)


class InferenceGaps:
    name = "gaps"
    description = (
        f"amortisation and approximation gaps (Cremer et al. 2018) on {GAP_IMAGES} test images: "
        f"q optimised per image, {GAP_STEPS} Adam steps, decoder fixed"
    )
    columns = (
        Column("amortization_gap", "lower", "nats", f"-ELBO(encoder's q) - -ELBO(q optimised per image, {GAP_STEPS} Adam steps, "
               "decoder fixed) on a fixed test subset (Cremer et al. 2018)", label="amort. gap"),
        Column("approximation_gap", "lower", "nats", "-ELBO(optimised q) - IS-NLL on the same subset: the cost of a diagonal Gaussian q",
               label="approx. gap"),
        Column("gap_images", "none", "images", "test images the gaps are measured on", text=True),
        Column("gap_steps", "none", "steps", "Adam steps of the per-image optimisation", text=True),
    )

    def __call__(self, ctx: EvalContext) -> dict:
        from vaebench.evaluation.importance import importance_log_likelihood

        model = ctx.model
        if not getattr(model, "amortized", True):
            return self._na("the model has no encoder (its q is fitted per image already)")
        split, positions = ctx.split("test", GAP_IMAGES)
        x, y = split.x, split.y
        with torch.inference_mode():
            q0 = variational_of(model, x, y, positions)  # the q of the model's ELBO column
        if not is_diagonal_gaussian(q0):
            return self._na(f"its posterior is a {type(q0).__name__}, not a diagonal Gaussian")
        q0 = Independent(Normal(q0.base_dist.loc.clone(), q0.base_dist.scale.clone()), 1)  # out of inference mode
        torch.manual_seed(GAP_SEED)
        with torch.no_grad():
            amortised = neg_elbo_estimate(model, q0, x, y, GAP_ELBO_SAMPLES)
        fitted = optimise_posteriors(model, q0, x, y)
        torch.manual_seed(GAP_SEED)
        with torch.no_grad():
            optimised = neg_elbo_estimate(model, fitted, x, y, GAP_ELBO_SAMPLES)
        torch.manual_seed(GAP_SEED)
        index = torch.arange(len(x), device=x.device)
        log_px = importance_log_likelihood(FixedProposal(model, fitted), x, y, index, ctx.is_samples)
        nll = -log_px
        return {
            "amortization_gap": (amortised - optimised).mean().item(),
            "approximation_gap": (optimised - nll).mean().item(),
            "gap_neg_elbo_amortized": amortised.mean().item(),
            "gap_neg_elbo_optimized": optimised.mean().item(),
            "gap_is_nll": nll.mean().item(),
            "gap_images": len(x),
            "gap_steps": GAP_STEPS,
        }

    @staticmethod
    def _na(reason: str) -> dict:
        return {"amortization_gap": None, "approximation_gap": None, "amortization_gap_na": reason, "approximation_gap_na": reason}
