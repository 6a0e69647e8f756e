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
    description = "NMI vs labels of k = classes clusters: the model's discrete latent when it has that many categories, else KMeans on posterior means"
    columns = (
        Column("nmi", "higher", "", "normalised mutual information (sklearn's score) between the test labels and k = number of "
               "classes clusters in every row: the model's own discrete latent when it has k categories, else KMeans (k) on "
               "posterior means", label="NMI", headline=True, digits=3),
        Column("nmi_method", "none", "", "what the clusters of the NMI column came from", text=True),
        Column("nmi_own", "higher", "", "NMI of the model's own discrete latent, with as many clusters as it has categories "
               "(nmi_own_k); n/a for models without one", label="NMI own", digits=3),
        Column("nmi_own_k", "none", "", "categories of the model's own discrete latent", text=True, label="own k"),
    )

    def __call__(self, ctx: EvalContext) -> dict:
        from sklearn.metrics import normalized_mutual_info_score

        split, positions = ctx.split("test")
        labels = split.y.cpu().numpy()
        classes = ctx.data.n_classes
        own = own_clusters(ctx.model, split)
        own_k = getattr(ctx.model, "clusters", None)
        values = {"nmi_own": None, "nmi_own_k": None}
        if own is not None:
            values.update(nmi_own=float(normalized_mutual_info_score(labels, own)), nmi_own_k=own_k)
        if own is not None and own_k == classes:
            values.update(nmi=values["nmi_own"], nmi_method=f"own discrete latent ({classes} categories)")
            return values
        codes = posterior_means(ctx, split, positions).numpy()
        values["nmi"] = float(normalized_mutual_info_score(labels, kmeans_assignments(codes, classes)))
        values["nmi_method"] = f"kmeans(k={classes}, seed={KMEANS_SEED}) on posterior means"
        return values
