"""Validation criteria: how a run scores its model on the validation split after each epoch.

The score picks the epoch whose weights are evaluated (``select_epoch = "best-val"``)
and drives early stopping (``patience``). Lower is better. The default is the true
(beta = 1) single-sample -ELBO; a variant whose ELBO is not defined during training
(ae-gmm fits its prior only afterwards) declares another criterion in its recipe.
"""

from __future__ import annotations

import torch

from vaebench.data import ImageData
from vaebench.evaluation.context import chunks

EVAL_BATCH = 4096


class ValidationNegELBO:
    """The true -ELBO (beta = 1, one posterior sample per image) on the validation split."""

    name = "val_neg_elbo"

    @torch.inference_mode()
    def __call__(self, model, data: ImageData) -> float:
        from vaebench.metrics.elbo import neg_elbo_per_example

        split = data.val
        model.prepare_inference("val", split.x, split.y)
        index = torch.arange(len(split), device=split.x.device)
        recon, kl = neg_elbo_per_example(model, split.x, split.y, index, EVAL_BATCH)
        return (recon + kl).mean().item()


class ValidationReconstruction:
    """-log p(x | z = E_q[z | x]) on the validation split: the reconstruction error of the
    posterior mean (for a deterministic encoder, its code)."""

    name = "val_reconstruction"

    @torch.inference_mode()
    def __call__(self, model, data: ImageData) -> float:
        split = data.val
        model.prepare_inference("val", split.x, split.y)
        total = torch.zeros((), device=split.x.device, dtype=torch.float64)
        for s in chunks(len(split), EVAL_BATCH):
            x, y = split.x[s], split.y[s]
            index = torch.arange(s.start, s.stop, device=x.device)
            z = model.posterior(x, y, index).mean
            total += -model.likelihood(z, y).log_prob(x).double().sum()
        return total.item() / len(split)
