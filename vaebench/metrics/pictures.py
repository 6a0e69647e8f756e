"""PNG pictures of a run: samples, reconstructions, group grids, latent scatter, curves."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from vaebench.atomic import write_atomic
from vaebench.evaluation.context import EvalContext, posterior_means

N_SAMPLES = 64
N_RECONSTRUCTIONS = 32
MIN_PIXELS = 28  # small images (8x8 digits) are enlarged so that the grids are readable


def as_images(flat: torch.Tensor, shape) -> torch.Tensor:
    images = flat.detach().float().cpu().clamp(0, 1).reshape(-1, *shape)
    if shape[-1] < MIN_PIXELS:
        images = F.interpolate(images, scale_factor=MIN_PIXELS // shape[-1] + 1, mode="nearest")
    return images


def pyplot():
    """matplotlib's pyplot on the Agg backend, imported when a picture is drawn (it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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


class Pictures:
    name = "pictures"
    description = "sample grids (probabilities and draws), reconstructions, class/category grids, latent scatter, curves"
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

        codes = posterior_means(ctx, split, positions).numpy()
        from sklearn.decomposition import PCA

        if codes.shape[1] > 2:
            codes = PCA(n_components=2, random_state=0).fit_transform(codes)
            axes = ("PC 1", "PC 2")
        else:
            axes = ("z 1", "z 2")
        fig, ax = pyplot().subplots(figsize=(5, 5))
        points = ax.scatter(codes[:, 0], codes[:, 1], c=split.y.cpu().numpy(), cmap="tab10", s=4)
        fig.colorbar(points, ax=ax, label="class")
        ax.set_xlabel(axes[0])
        ax.set_ylabel(axes[1])
        ax.set_title("posterior means of the test split")
        written.append(save_figure(out / "latent_scatter.png", fig))

        history = ctx.training.history if ctx.training is not None else []
        if history:
            keys = ["loss", "reconstruction", "kl", "val_neg_elbo"]
            written.append(save_figure(out / "loss_curves.png", plot_curves(history, keys, "training", "nats per image")))
            if any("nmi" in h for h in history):
                written.append(save_figure(out / "nmi_curve.png", plot_curves(history, ["nmi"], "NMI per epoch", "NMI")))
        return {"pictures": sorted(p.name for p in written)}
