"""The test ELBO: always beta = 1 and no capacity terms, whatever the variant trained on."""

from __future__ import annotations

import torch

from vaebench.evaluation.context import Column, EvalContext, chunks
from vaebench.models import variational_label_of, variational_of
from vaebench.objectives import elbo_parts


@torch.inference_mode()
def neg_elbo_per_example(model, x, y, index, batch: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(-log p(x|z), KL) per example, one sample each from the model's ELBO q (its posterior
    unless it offers several and chose one on validation)."""
    recon, kl = [], []
    for s in chunks(len(x), batch):
        q = variational_of(model, x[s], y[s], index[s])
        parts = elbo_parts(model, x[s], y[s], index[s], reparameterize=False, q=q)
        recon.append(-parts.log_likelihood)
        kl.append(parts.kl)
    return torch.cat(recon), torch.cat(kl)


class TestELBO:
    name = "elbo"
    description = (
        "-ELBO on the test split in nats per image, with its reconstruction and KL parts (beta = 1); "
        "for label-conditioned models -ELBO(x|y) - log p(y), a bound on -log p(x) like every row's"
    )
    columns = (
        Column("neg_elbo", "lower", "nats", "-ELBO on the test split, one sample from q per image (elbo_q says which q), beta = 1: a bound on -log p(x) "
               "(for label-conditioned models -ELBO(x|y) - log p(y))", label="-ELBO", headline=True),
        Column("neg_elbo_reconstruction", "lower", "nats", "-E_q log p(x|z), the reconstruction part of -ELBO", label="recon"),
        Column("neg_elbo_kl", "none", "nats", "KL(q(z|x) || p(z)), the other part of -ELBO (Monte Carlo where no closed form)", label="KL"),
        Column("neg_elbo_given_y", "lower", "nats", "-ELBO(x|y) of label-conditioned models: a bound on -log p(x|y)", label="-ELBO(x|y)"),
        Column("elbo_split", "none", "", "the split the ELBO was computed on", text=True),
        Column("elbo_q", "none", "", "the q(z|x) of the ELBO columns (any q gives a bound; a model offering several uses "
               "the one with the best validation ELBO)", text=True),
    )

    def __call__(self, ctx: EvalContext) -> dict:
        split, positions = ctx.split("test")
        recon, kl = neg_elbo_per_example(ctx.model, split.x, split.y, positions)
        values = {
            "neg_elbo": (recon + kl).mean().item(),
            "neg_elbo_reconstruction": recon.mean().item(),
            "neg_elbo_kl": kl.mean().item(),
            "elbo_split": "test",
            "elbo_q": variational_label_of(ctx.model),
        }
        if getattr(ctx.model, "label_conditioned", False):
            # log p(x) >= log p(x, y) = log p(y) + log p(x|y) >= log p(y) + ELBO(x|y)
            neg_log_py = -ctx.label_log_prior().to(split.y.device)[split.y]
            values["neg_elbo_given_y"] = values["neg_elbo"]
            values["neg_elbo_label"] = neg_log_py.mean().item()
            values["neg_elbo"] = (recon + kl + neg_log_py).mean().item()
        return values
