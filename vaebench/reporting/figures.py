"""Figures across the runs of an --out folder: one grid per run, side by side."""

from __future__ import annotations

import math
from pathlib import Path

from vaebench.atomic import write_atomic


def pyplot():
    """matplotlib's pyplot on the Agg backend, imported when a figure is drawn (it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def combined_figure(out_dir: Path, picture: str = "samples_probs.png") -> Path | None:
    """One figure with a grid per variant (seed 0's ``picture``), in ``figures/``."""
    import matplotlib.image as mpimg

    plt = pyplot()

    out_dir = Path(out_dir)
    grids = []
    for variant_dir in sorted((out_dir / "runs").glob("*")):
        seeds = sorted(variant_dir.glob(f"seed-*/{picture}"))
        if seeds:
            grids.append((variant_dir.name, seeds[0]))
    if not grids:
        return None
    cols = min(4, len(grids))
    rows = math.ceil(len(grids) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, path) in zip(axes.flat, grids):
        ax.imshow(mpimg.imread(path), cmap="gray")
        ax.set_title(name)
    fig.suptitle(f"samples ({picture[:-4]}) per variant")
    path = out_dir / "figures" / f"all_{picture}"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)
    return path


CURVES = ("val_neg_elbo", "nmi")  # history columns drawn per epoch across runs, where runs have them


def history_curves(out_dir: Path, key: str) -> Path | None:
    """``figures/<key>_per_epoch.png``: ``key`` from each run's history.csv against the epoch, the
    mean over its seeds with their range shaded; ``None`` when no run logged ``key``."""
    plt = pyplot()
    import pandas as pd

    out_dir = Path(out_dir)
    curves = {}
    for run_dir in sorted((out_dir / "runs").glob("*")):
        frames = []
        for history in sorted(run_dir.glob("seed-*/history.csv")):
            frame = pd.read_csv(history)
            if key in frame and frame[key].notna().any():
                frames.append(frame.set_index("epoch")[key].rename(history.parent.name))
        if frames:
            curves[run_dir.name] = pd.concat(frames, axis=1)
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, table in curves.items():
        epochs = table.index + 1
        ax.plot(epochs, table.mean(axis=1), label=f"{name} ({table.shape[1]} seed{'s' if table.shape[1] > 1 else ''})")
        if table.shape[1] > 1:
            ax.fill_between(epochs, table.min(axis=1), table.max(axis=1), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.set_title(f"{key} per epoch (mean over seeds, range shaded)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = out_dir / "figures" / f"{key}_per_epoch.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)
    return path


def all_figures(out_dir: Path) -> list[Path]:
    """Every across-run figure of an --out folder: sample and reconstruction grids, per-epoch curves."""
    made = [combined_figure(out_dir), combined_figure(out_dir, "reconstructions.png")]
    made += [history_curves(out_dir, key) for key in CURVES]
    return [p for p in made if p is not None]
