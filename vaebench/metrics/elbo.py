"""The test ELBO: always beta = 1 and no capacity terms, whatever the variant trained on."""

from __future__ import annotations

import torch

from vaebench.evaluation import EvalContext, chunks
from vaebench.objectives import elbo_parts


@torch.inference_mode()
def neg_elbo_per_example(model, x, y, index, batch: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(-log p(x|z), KL) per example, one posterior sample each."""
    recon, kl = [], []
    for s in chunks(len(x), batch):
        parts = elbo_parts(model, x[s], y[s], index[s], reparameterize=False)
        recon.append(-parts.log_likelihood)
        kl.append(parts.kl)
    return torch.cat(recon), torch.cat(kl)


class TestELBO:
    name = "elbo"
    description = "-ELBO on the test split in nats per image, with its reconstruction and KL parts (beta = 1)"

    def __call__(self, ctx: EvalContext) -> dict:
        split, positions = ctx.split("test")
        recon, kl = neg_elbo_per_example(ctx.model, split.x, split.y, positions)
        return {
            "neg_elbo": (recon + kl).mean().item(),
            "neg_elbo_reconstruction": recon.mean().item(),
            "neg_elbo_kl": kl.mean().item(),
            "elbo_split": "test",
        }
