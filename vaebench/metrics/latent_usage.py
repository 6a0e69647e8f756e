"""How the latent space is used: active units, KL per dimension, and category usage.

* ``active_units`` (Burda et al. 2016): the dimensions d with Cov_x(E_q[z_d | x]) > 0.01 over
  the test split, of the continuous latent (the Gaussian part of a joint latent).
* KL per dimension: E_x KL(q(z_d | x) || p(z_d)) in nats, where q and the prior factorise
  over dimensions as diagonal Gaussians (closed form); written to ``metrics.json``
  (``kl_per_dim``) and drawn as ``kl_per_dimension.png``. n/a, with the reason, otherwise.

I(x; z) under the aggregate posterior of N test images (Hoffman & Johnson 2016) is not
reported: it cannot exceed log N (9.2 nats for all 10,000 MNIST test images), far below the
rate of any trained model here (the KL column, 20-30 nats), so every row would read its
ceiling. The rate itself (``neg_elbo_kl``) and the active units say how the latent is used.
* ``category_perplexity``: for models with a discrete latent of their own, exp of the
  entropy of how often each category is the argmax over the test split: the number of
  categories in effective use (``category_usage.png`` draws the shares).
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution, Independent, Normal

from vaebench.evaluation.context import Column, EvalContext, chunks
from vaebench.metrics.nmi import own_clusters

ACTIVE_THRESHOLD = 0.01


def continuous_part(q: Distribution) -> Distribution:
    """The continuous latent of a posterior: the first part of a joint latent, else itself."""
    return q.parts[0] if hasattr(q, "parts") else q


def diagonal_normal(q: Distribution) -> Normal | None:
    if isinstance(q, Independent) and isinstance(q.base_dist, Normal) and q.reinterpreted_batch_ndims == 1:
        return q.base_dist
    return None


@torch.inference_mode()
def posteriors(ctx: EvalContext, split, positions, batch: int = 4096):
    for s in chunks(len(split), batch):
        yield continuous_part(ctx.model.posterior(split.x[s], split.y[s], positions[s]))


@torch.inference_mode()
def kl_per_dimension(ctx: EvalContext, split, positions) -> tuple[torch.Tensor | None, str | None]:
    """E_x KL(q(z_d|x) || p(z_d)) per dimension, or (None, why not)."""
    from torch.distributions import kl_divergence

    prior = continuous_part(ctx.model.prior.distribution())
    prior_normal = diagonal_normal(prior)
    if prior_normal is None:
        return None, f"the prior is a {type(prior).__name__}, not a product of Gaussians per dimension"
    total, count = None, 0
    for q in posteriors(ctx, split, positions):
        normal = diagonal_normal(q)
        if normal is None:
            return None, f"the posterior is a {type(q).__name__}, not a diagonal Gaussian"
        kl = kl_divergence(normal, prior_normal).sum(0).float().cpu()
        total = kl if total is None else total + kl
        count += normal.loc.shape[0]
    return total / count, None


class LatentUsage:
    name = "latent_usage"
    description = "active units, KL per dimension, category usage"
    columns = (
        Column("active_units", "none", "dimensions", f"latent dimensions with Cov_x(E_q[z_d|x]) > {ACTIVE_THRESHOLD} over the "
               "test split (Burda et al. 2016); at most the continuous latent's dimensions", label="active units", digits=1),
        Column("category_perplexity", "none", "categories", "exp of the entropy of the argmax category's frequencies over the "
               "test split: categories in effective use; at most the number of categories", label="categories used"),
    )

    def __call__(self, ctx: EvalContext) -> dict:
        split, positions = ctx.split("test")
        means = torch.cat([q.mean.float().cpu() for q in posteriors(ctx, split, positions)])
        values: dict = {"active_units": int((means.var(dim=0) > ACTIVE_THRESHOLD).sum())}
        kl, why = kl_per_dimension(ctx, split, positions)
        if kl is None:
            values["kl_per_dim"], values["kl_per_dim_na"] = None, why
        else:
            values["kl_per_dim"] = [round(float(v), 6) for v in kl]
            draw_bars(ctx.run_dir / "kl_per_dimension.png", kl.tolist(), "latent dimension", "E_x KL(q(z_d|x) || p(z_d)), nats")
        clusters = own_clusters(ctx.model, split)
        if clusters is None:
            values["category_perplexity"], values["category_perplexity_na"] = None, "the model has no discrete latent of its own"
        else:
            counts = torch.bincount(torch.as_tensor(clusters), minlength=int(clusters.max()) + 1).double()
            shares = counts / counts.sum()
            entropy = -(shares[shares > 0] * shares[shares > 0].log()).sum()
            values["category_perplexity"] = float(entropy.exp())
            values["category_shares"] = [round(float(v), 6) for v in shares]
            draw_bars(ctx.run_dir / "category_usage.png", shares.tolist(), "category (argmax q(c|x))", "share of test images")
        return values


def draw_bars(path, heights: list[float], xlabel: str, ylabel: str) -> None:
    from vaebench.reporting.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.25 * len(heights)), 3))
    ax.bar(range(len(heights)), heights, color="#4c72b0")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
