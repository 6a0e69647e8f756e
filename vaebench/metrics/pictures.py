"""PNG pictures of a run: samples, reconstructions, group grids, latent scatter, curves."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from vaebench.atomic import write_atomic
from vaebench.evaluation.context import EvalContext, posterior_means
from vaebench.reporting.figures import pyplot

N_SAMPLES = 64
N_RECONSTRUCTIONS = 32
MIN_PIXELS = 28  # small images (8x8 digits) are enlarged so that the grids are readable


def as_images(flat: torch.Tensor, shape) -> torch.Tensor:
    images = flat.detach().float().cpu().clamp(0, 1).reshape(-1, *shape)
    if shape[-1] < MIN_PIXELS:
        images = F.interpolate(images, scale_factor=MIN_PIXELS // shape[-1] + 1, mode="nearest")
    return images


def save_grid(path: Path, flat: torch.Tensor, shape, nrow: int) -> Path:
    from torchvision.utils import make_grid, save_image  # torchvision loads torch's compiler stack: import it late

    grid = make_grid(as_images(flat, shape), nrow=nrow, padding=2, pad_value=0.5)
    return write_atomic(path, lambda tmp: save_image(grid, tmp, format="png"))


def save_figure(path: Path, fig) -> Path:
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    pyplot().close(fig)
    return path


def plot_curves(history: list[dict], keys: list[str], title: str, ylabel: str):
    fig, ax = pyplot().subplots(figsize=(6, 4))
    epochs = [h["epoch"] + 1 for h in history]
    for key in keys:
        if any(key in h for h in history):
            ax.plot(epochs, [h.get(key, float("nan")) for h in history], marker="o", markersize=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


N_INTERPOLATIONS, INTERPOLATION_STEPS = 8, 10


def interpolation(model, split, positions, shape, path: Path) -> Path:
    """Rows of images decoded along the line between the posterior means of two test images."""
    rows = []
    for i in range(N_INTERPOLATIONS):
        a, b = 2 * i, 2 * i + 1
        x, y, index = split.x[[a, b]], split.y[[a, b]], positions[[a, b]]
        z = model.posterior(x, y, index).mean
        t = torch.linspace(0, 1, INTERPOLATION_STEPS, device=z.device).unsqueeze(1)
        line = (1 - t) * z[0] + t * z[1]
        labels = y[0].expand(INTERPOLATION_STEPS) if getattr(model, "label_conditioned", False) else None
        rows.append(torch.cat([x[:1], model.likelihood(line, labels).mean, x[1:]]))
    return save_grid(path, torch.cat(rows), shape, nrow=INTERPOLATION_STEPS + 2)


def latent_scatter(codes: torch.Tensor, labels, mixture_prior, path: Path) -> Path:
    """Posterior means of the test split in 2-d (PCA beyond 2 dimensions), with samples of a mixture prior."""
    from sklearn.decomposition import PCA

    codes = codes.numpy()
    project, axes = (lambda a: a), ("z 1", "z 2")
    if codes.shape[1] > 2:
        pca = PCA(n_components=2, random_state=0).fit(codes)
        project, axes = pca.transform, ("PC 1", "PC 2")
    fig, ax = pyplot().subplots(figsize=(5, 5))
    flat = project(codes)
    points = ax.scatter(flat[:, 0], flat[:, 1], c=labels, cmap="tab10", s=4)
    fig.colorbar(points, ax=ax, label="class")
    if mixture_prior is not None:
        prior_points = project(mixture_prior.sample(2000).float().cpu().numpy())
        ax.scatter(prior_points[:, 0], prior_points[:, 1], c="black", s=1, alpha=0.3, label="prior samples")
        centres = project(mixture_prior.means.detach().float().cpu().numpy())
        ax.scatter(centres[:, 0], centres[:, 1], c="red", marker="x", s=40, label="component means")
        ax.legend(loc="best", fontsize=7)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title("posterior means of the test split")
    return save_figure(path, fig)


class Pictures:
    name = "pictures"
    description = ("sample grids (probabilities and draws), reconstructions, interpolations, class/category grids, "
                   "mixture modes, latent scatter with mixture-prior samples, per-class IS-NLL, curves")
    columns = ()  # pictures only

    @torch.inference_mode()
    def __call__(self, ctx: EvalContext) -> dict:
        model, shape, out = ctx.model, ctx.data.image_shape, ctx.run_dir
        torch.manual_seed(ctx.seed)
        written: list[Path] = []
        labels = torch.arange(N_SAMPLES, device=ctx.device) % ctx.data.n_classes
        z = model.prior.sample(N_SAMPLES)
        p = model.likelihood(z, labels)
        written.append(save_grid(out / "samples_probs.png", p.mean, shape, nrow=8))
        written.append(save_grid(out / "samples.png", p.sample(), shape, nrow=8))

        split, positions = ctx.split("test")
        x, y, idx = split.x[:N_RECONSTRUCTIONS], split.y[:N_RECONSTRUCTIONS], positions[:N_RECONSTRUCTIONS]
        recon = model.likelihood(model.posterior(x, y, idx).mean, y).mean
        pairs = torch.stack([x, recon], dim=1).reshape(-1, x.shape[-1])  # original, reconstruction, ...
        written.append(save_grid(out / "reconstructions.png", pairs, shape, nrow=16))

        if hasattr(model, "samples_by_group"):
            groups = model.samples_by_group(8)  # [G, 8, D]
            name = getattr(model, "group_name", "group")
            written.append(save_grid(out / f"samples_by_{name}.png", groups.reshape(-1, groups.shape[-1]), shape, nrow=8))

        written.append(interpolation(model, split, positions, shape, out / "interpolation.png"))

        means = getattr(getattr(model.prior, "means", None), "detach", None)
        if means is not None:  # a mixture prior: decode each component's mean (its mode)
            modes = model.likelihood(model.prior.means.to(ctx.device), None).mean
            written.append(save_grid(out / "mixture_modes.png", modes, shape, nrow=min(10, len(modes))))

        codes = posterior_means(ctx, split, positions)
        written.append(latent_scatter(codes, split.y.cpu().numpy(), model.prior if means is not None else None,
                                      out / "latent_scatter.png"))

        per_class = sorted((int(k.rsplit("_", 1)[1]), v) for k, v in ctx.values.items() if k.startswith("is_nll_class_"))
        if per_class:
            fig, ax = pyplot().subplots(figsize=(5, 3))
            ax.bar([c for c, _ in per_class], [v for _, v in per_class], color="#4c72b0")
            ax.set_xlabel("class")
            ax.set_ylabel("IS-NLL, nats")
            ax.set_title("-log p(x) per class, test split")
            ax.set_ylim(bottom=min(v for _, v in per_class) * 0.9)
            written.append(save_figure(out / "is_nll_per_class.png", fig))

        history = ctx.training.history if ctx.training is not None else []
        if history:
            keys = ["loss", "reconstruction", "kl", "val_neg_elbo"]
            written.append(save_figure(out / "loss_curves.png", plot_curves(history, keys, "training", "nats per image")))
            if any("nmi" in h for h in history):
                written.append(save_figure(out / "nmi_curve.png", plot_curves(history, ["nmi"], "NMI per epoch", "NMI")))
        return {"pictures": sorted(p.name for p in written)}
