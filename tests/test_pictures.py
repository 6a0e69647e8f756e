"""The pictures every run writes: interpolations, per-class IS-NLL, mixture modes with the prior's samples."""

from __future__ import annotations

from PIL import Image

from helpers import metrics_of, run_tiny


def test_pictures_include_interpolations_per_class_nll_and_mixture_modes(tmp_path):
    run_tiny(tmp_path, ["gaussian", "mog-prior", "conditional"], epochs=2, metrics=["is_nll", "pictures"])
    for variant in ("gaussian", "mog-prior", "conditional"):
        folder = tmp_path / f"runs/{variant}/seed-0"
        written = set(metrics_of(tmp_path, variant)["pictures"])
        assert {"interpolation.png", "is_nll_per_class.png", "latent_scatter.png"} <= written
        width, height = Image.open(folder / "interpolation.png").size
        assert width > height  # 8 rows of 2 originals and 10 steps between them
    assert "mixture_modes.png" in metrics_of(tmp_path, "mog-prior")["pictures"]
    assert "mixture_modes.png" not in metrics_of(tmp_path, "gaussian")["pictures"]
