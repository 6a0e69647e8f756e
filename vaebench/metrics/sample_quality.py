"""Sample quality: FID and KID of the model's samples against the test images.

Both are computed by torchmetrics (``FrechetInceptionDistance`` and
``KernelInceptionDistance`` with a custom feature extractor) in the feature space of
:mod:`vaebench.evaluation.features`, a classifier trained on the dataset's own training
split, since Inception's weights cannot be fetched offline and do not suit 28x28 digits.
Samples are x ~ p(x | z), z ~ p(z) (labels drawn from the training frequencies for
label-conditioned models), binarised like the test images when the pixels are binary;
as many samples as test images. Being in another feature space, these values are not
comparable with Inception FIDs in papers, only between rows of one table.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from vaebench.evaluation.context import Column, EvalContext, chunks
from vaebench.evaluation.features import FEATURES, FeatureSpace, feature_space

KID_SUBSET = 1000


class Embedding(nn.Module):
    """The classifier's penultimate layer as torchmetrics' feature extractor."""

    def __init__(self, space: FeatureSpace):
        super().__init__()
        self.net = space.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embed(x.float())


def distances(space: FeatureSpace, real: torch.Tensor, fake: torch.Tensor, batch: int = 2048) -> dict:
    """FID and KID (mean and std over subsets) between two sets of flat images, on the CPU."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    embedding = Embedding(space)
    fid = FrechetInceptionDistance(feature=embedding, input_img_size=(real.shape[1],), normalize=False)
    with warnings.catch_warnings():  # that KID keeps every feature: 2 x 10,000 x 128 floats here
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(feature=embedding, subset_size=min(KID_SUBSET, len(real), len(fake)), normalize=False)
    with torch.inference_mode(False), torch.no_grad():
        for images, is_real in ((real, True), (fake, False)):
            for s in chunks(len(images), batch):
                fid.update(images[s].cpu().float(), real=is_real)
                kid.update(images[s].cpu().float(), real=is_real)
        kid_mean, kid_std = kid.compute()
        return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}


@torch.inference_mode()
def draw_samples(ctx: EvalContext, n: int, batch: int = 4096) -> torch.Tensor:
    model = ctx.model
    binary = ctx.data.binarization in ("dynamic", "static", "threshold")
    out = []
    for s in chunks(n, batch):
        z = model.prior.sample(s.stop - s.start)
        y = None
        if getattr(model, "label_conditioned", False):
            y = torch.multinomial(ctx.label_log_prior().exp(), s.stop - s.start, replacement=True).to(z.device)
        likelihood = model.likelihood(z, y)
        out.append((likelihood.sample() if binary else likelihood.mean).float().cpu())
    return torch.cat(out)


class SampleQuality:
    name = "sample_quality"
    description = "FID and KID of samples vs test images, in the features of a classifier trained on the dataset"
    columns = (
        Column("fid", "lower", "", "Fréchet distance between the features of the samples and of the test images "
               "(torchmetrics), in the feature space named by feature_extractor", label="FID"),
        Column("kid", "lower", "", "kernel inception distance (polynomial kernel, subsets of 1000) in the same features",
               label="KID", digits=4),
        Column("sample_images", "none", "images", "samples drawn, as many as test images", digits=0),
        Column("feature_extractor", "none", "", "the feature space of FID and KID", text=True),
    )

    def __call__(self, ctx: EvalContext) -> dict:
        data_dir = getattr(ctx.settings, "data_dir", None) if ctx.settings is not None else None
        space = feature_space(ctx.data, data_dir, progress=ctx.say)
        real = ctx.data.split("test").x
        fake = draw_samples(ctx, len(real))
        values = distances(space, real, fake)
        return {**values, "sample_images": len(fake), "feature_extractor": space.describe(), "feature_dims": FEATURES}
