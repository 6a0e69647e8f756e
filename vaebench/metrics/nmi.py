"""NMI between a clustering of the test codes and the labels (sklearn's score)."""

from __future__ import annotations

import torch

from vaebench.evaluation.context import Column, EvalContext, chunks, posterior_means

KMEANS_SEED = 0


def kmeans_assignments(codes, n_clusters: int, seed: int = KMEANS_SEED):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(codes)


@torch.inference_mode()
def own_clusters(model, split, batch: int = 4096):
    """The model's own discrete latent per example, or None when it has none."""
    out = []
    for s in chunks(len(split), batch):
        ids = model.cluster(split.x[s], split.y[s])
        if ids is None:
            return None
        out.append(ids.cpu())
    return torch.cat(out).numpy()


class NMI:
    name = "nmi"
    description = "NMI of the model's discrete latent (or KMeans, k = classes, on posterior means) vs labels"
    columns = (
        Column("nmi", "higher", "", "normalised mutual information between the test labels and the model's own discrete latent, "
               "or KMeans clusters of posterior means (sklearn's score)", label="NMI", headline=True, digits=3),
        Column("nmi_method", "none", "", "what the clusters came from", text=True),
    )

    def __call__(self, ctx: EvalContext) -> dict:
        from sklearn.metrics import normalized_mutual_info_score

        split, positions = ctx.split("test")
        labels = split.y.cpu().numpy()
        clusters = own_clusters(ctx.model, split)
        if clusters is not None:
            method = "own discrete latent"
        else:
            codes = posterior_means(ctx, split, positions).numpy()
            clusters = kmeans_assignments(codes, ctx.data.n_classes)
            method = f"kmeans(k={ctx.data.n_classes}, seed={KMEANS_SEED}) on posterior means"
        return {"nmi": float(normalized_mutual_info_score(labels, clusters)), "nmi_method": method}
