"""Training objectives and the true ELBO.

An objective is called as ``objective(model, batch, progress) -> Terms``.
``Terms.loss`` is what the optimizer minimises; ``Terms.logs`` are per-image
batch means: tensors kept on the device (no host synchronisation per step), or
Python floats for values the host already knows, such as a schedule's weight. Only
:func:`elbo_parts` (with weight 1, no capacity) is called an ELBO; weighted or
capacity-controlled losses are logged as ``loss`` beside the true ``elbo``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution, RelaxedOneHotCategorical, kl_divergence

from vaebench.schedules import Progress


@dataclass
class Batch:
    """Images ``x`` [B, D], labels ``y`` [B] and their ``index`` [B] in the training split."""

    x: Tensor
    y: Tensor
    index: Tensor


@dataclass
class Terms:
    loss: Tensor
    logs: dict[str, Tensor | float] = field(default_factory=dict)


def kl_to_prior(q: Distribution, prior: Distribution, z: Tensor) -> Tensor:
    """KL(q || prior) in closed form where torch.distributions has it, else log q(z) - log p(z)."""
    try:
        return kl_divergence(q, prior.expand(q.batch_shape))
    except NotImplementedError:
        return q.log_prob(z) - prior.log_prob(z)


@dataclass
class ElboParts:
    log_likelihood: Tensor  # [B]: log p(x | z), one z per image
    kl: Tensor  # [B]
    posterior: Distribution
    z: Tensor

    @property
    def elbo(self) -> Tensor:
        return self.log_likelihood - self.kl


def elbo_parts(
    model, x: Tensor, y: Tensor | None = None, index: Tensor | None = None, reparameterize: bool = True, q: Distribution | None = None
) -> ElboParts:
    """One-sample ELBO terms per image: E_q log p(x|z) - KL(q(z|x) || p(z)).

    ``q`` defaults to ``model.posterior(x, y, index)``; evaluation passes the model's proposal.
    """
    q = model.posterior(x, y, index) if q is None else q
    z = q.rsample() if reparameterize else q.sample()
    log_likelihood = model.likelihood(z, y).log_prob(x)
    kl = kl_to_prior(q, model.prior.distribution(), z)
    return ElboParts(log_likelihood, kl, q, z)


def _logs(parts: ElboParts, **extra: Tensor | float) -> dict[str, Tensor]:
    logs = {
        "reconstruction": -parts.log_likelihood.detach().mean(),
        "kl": parts.kl.detach().mean(),
        "elbo": parts.elbo.detach().mean(),
    }
    for key, value in extra.items():
        logs[key] = value.detach() if isinstance(value, Tensor) else float(value)
    return logs


class Objective:
    """Base class; stateful objectives override ``state_dict`` / ``load_state_dict``.

    ``compiles = False`` keeps an objective off the compiled training step
    (:mod:`vaebench.fast.train_step`): set it when ``__call__`` updates Python-side state
    each step, which a compiled graph would not repeat.
    """

    compiles: bool = True

    def __call__(self, model, batch: Batch, progress: Progress) -> Terms:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def to(self, device) -> "Objective":
        return self

    def describe(self) -> dict:
        return {"objective": type(self).__name__}


class ELBO(Objective):
    """The negative single-sample reparameterised ELBO, averaged over the batch."""

    def __call__(self, model, batch, progress):
        parts = elbo_parts(model, batch.x, batch.y, batch.index)
        return Terms(-parts.elbo.mean(), _logs(parts))


class WeightedKL(Objective):
    """reconstruction + w(progress) * KL: beta-VAE for a constant w, KL annealing for a warm-up."""

    def __init__(self, weight: Callable[[Progress], float]):
        self.weight = weight

    def __call__(self, model, batch, progress):
        parts = elbo_parts(model, batch.x, batch.y, batch.index)
        w = self.weight(progress)
        loss = (-parts.log_likelihood + w * parts.kl).mean()
        return Terms(loss, _logs(parts, kl_weight=w, loss=loss))

    def describe(self):
        return {"objective": "WeightedKL", "kl_weight": repr(self.weight)}


class Reconstruction(Objective):
    """-log p(x | encode(x)) for a deterministic autoencoder: no KL term at all."""

    def __call__(self, model, batch, progress):
        log_likelihood = model.likelihood(model.encode(batch.x), batch.y).log_prob(batch.x)
        loss = -log_likelihood.mean()
        return Terms(loss, {"reconstruction": loss.detach()})


class CapacityELBO(Objective):
    """JointVAE's loss (Dupont 2018, eq. 7), per image:

    -E log p(x|z,c) + gamma * |KL_z - C_z| + gamma * |KL_c - C_c|

    with KLs averaged over the batch and C_z, C_c schedules of progress. c is
    drawn with torch's RelaxedOneHotCategorical at ``temperature``. With
    ``capacity=False`` the loss is the plain relaxed ELBO (weight 1, no C).
    """

    def __init__(self, gamma: float, c_z: Callable[[Progress], float], c_c: Callable[[Progress], float], temperature: float, capacity: bool = True):
        self.gamma, self.c_z, self.c_c = gamma, c_z, c_c
        self.temperature, self.capacity = temperature, capacity
        self._temperature = torch.tensor(float(temperature))  # moved once by .to(), not per step

    def to(self, device):
        self._temperature = self._temperature.to(device)
        return self

    def terms(self, model, batch, progress):
        """The loss's parts, returned separately so that tests can check them one by one."""
        q = model.posterior(batch.x, batch.y, batch.index)
        q_z, q_c = q.parts
        p_z, p_c = (p.expand(q.batch_shape) for p in model.prior.distribution().parts)
        z = q_z.rsample()
        c = RelaxedOneHotCategorical(self._temperature.to(z.device), logits=q_c.logits).rsample()
        log_likelihood = model.likelihood(torch.cat([z, c], dim=-1), batch.y).log_prob(batch.x)
        return log_likelihood, kl_divergence(q_z, p_z), kl_divergence(q_c, p_c)

    def __call__(self, model, batch, progress):
        log_likelihood, kl_z, kl_c = self.terms(model, batch, progress)
        recon, kl_z_mean, kl_c_mean = -log_likelihood.mean(), kl_z.mean(), kl_c.mean()
        if self.capacity:
            c_z, c_c = self.c_z(progress), self.c_c(progress)
            loss = recon + self.gamma * (kl_z_mean - c_z).abs() + self.gamma * (kl_c_mean - c_c).abs()
        else:
            c_z = c_c = 0.0
            loss = recon + kl_z_mean + kl_c_mean
        logs = {
            "reconstruction": recon.detach(),
            "kl": (kl_z_mean + kl_c_mean).detach(),
            "kl_z": kl_z_mean.detach(),
            "kl_c": kl_c_mean.detach(),
            "elbo": -(recon + kl_z_mean + kl_c_mean).detach(),
            "capacity_z": float(c_z),
            "capacity_c": float(c_c),
            "loss": loss.detach(),
        }
        return Terms(loss, logs)

    def describe(self):
        return {
            "objective": "CapacityELBO" if self.capacity else "RelaxedELBO",
            "gamma": self.gamma,
            "capacity_z": repr(self.c_z),
            "capacity_c": repr(self.c_c),
            "temperature": self.temperature,
        }


class ScoreFunctionELBO(Objective):
    """The ELBO for discrete latents with the score-function (REINFORCE) estimator.

    z ~ q(z|x) is sampled without reparameterisation. The surrogate

        -log p(x|z) - (log p(x|z) - b) * log q(z|x) + KL(q || p)

    (the first factor detached) gives the decoder the gradient of the
    reconstruction and the encoder (log p(x|z) - b) * grad log q(z|x) plus the
    exact KL's gradient. The baseline b is the running average of the batch
    reconstruction term over all previous updates (reference 000), starting at 0.
    It trains on the eager step: the baseline is updated in place after every step.
    """

    compiles = False

    def __init__(self):
        self.baseline = torch.zeros(())
        self.updates = torch.zeros((), dtype=torch.long)

    def to(self, device):
        self.baseline = self.baseline.to(device)
        self.updates = self.updates.to(device)
        return self

    def __call__(self, model, batch, progress):
        q = model.posterior(batch.x, batch.y, batch.index)
        z = q.sample()
        log_likelihood = model.likelihood(z, batch.y).log_prob(batch.x)
        log_q = q.log_prob(z)
        kl = kl_to_prior(q, model.prior.distribution(), z)
        advantage = log_likelihood.detach() - self.baseline
        surrogate = -log_likelihood - advantage * log_q + kl
        loss = surrogate.mean()
        logs = {
            "reconstruction": -log_likelihood.detach().mean(),
            "kl": kl.detach().mean(),
            "elbo": (log_likelihood - kl).detach().mean(),
            "baseline": self.baseline.clone(),
        }
        # running average over all updates so far, for the next step
        self.updates += 1
        self.baseline += (log_likelihood.detach().mean() - self.baseline) / self.updates
        return Terms(loss, logs)

    def state_dict(self):
        return {"baseline": self.baseline.detach().cpu(), "updates": self.updates.cpu()}

    def load_state_dict(self, state):
        device = self.baseline.device
        self.baseline = state["baseline"].to(device)
        self.updates = state["updates"].to(device)


class IWAE(Objective):
    """The importance-weighted bound of Burda et al. (2016) with ``k`` samples per image:

        log (1/k sum_i p(x, z_i) / q(z_i|x)),  z_i ~ q(z|x) reparameterised,

    a tighter bound on log p(x) than the ELBO for k > 1 (equal to it for k = 1). It is
    logged as ``iwae_bound``, never as ``elbo``; ``elbo`` is the k-sample average of
    log p(x, z_i) - log q(z_i|x), the ordinary ELBO estimate. Each step decodes k times
    as many images as the ELBO, so match IWAE against other rows in steps or seconds
    (``--steps``, ``--seconds``) as well as epochs.
    """

    def __init__(self, k: int):
        self.k = int(k)

    def __call__(self, model, batch, progress):
        q = model.posterior(batch.x, batch.y, batch.index)
        z = q.rsample((self.k,))  # [k, B, D]
        log_likelihood = model.likelihood(z, batch.y).log_prob(batch.x)  # [k, B]
        log_w = log_likelihood + model.prior.distribution().log_prob(z) - q.log_prob(z)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.k)
        loss = -bound.mean()
        logs = {
            "iwae_bound": bound.detach().mean(),
            "elbo": log_w.detach().mean(),
            "reconstruction": -log_likelihood.detach().mean(),
            "kl": (log_likelihood - log_w).detach().mean(),
        }
        return Terms(loss, logs)

    def describe(self):
        return {"objective": "IWAE", "k": self.k}
