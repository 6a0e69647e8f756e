"""Suites: variants x seeds x dataset x budget, with the settings they share.

A suite comes from CLI flags or a TOML file (``--suite``); both go through
:func:`make_suite`, which validates every value and raises
:class:`UsageError` with the fix.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from vaebench.data import BINARIZATIONS
from vaebench.distributions import LIKELIHOODS
from vaebench.errors import UsageError
from vaebench.training import SELECT_EPOCHS
from vaebench.evaluation import IS_PRECISIONS
from vaebench.variant import SharedSettings


@dataclass(frozen=True)
class Budget:
    """A budget preset: epochs and the default number of importance samples."""

    name: str
    epochs: int
    is_samples: int


BUDGETS = {
    "smoke": Budget("smoke", epochs=2, is_samples=100),
    "quick": Budget("quick", epochs=50, is_samples=1000),
    "standard": Budget("standard", epochs=100, is_samples=5000),
}
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class Suite:
    variants: list[str]
    seeds: list[int]
    dataset: str = "digits"
    budget: str = "quick"
    epochs: int = BUDGETS["quick"].epochs
    is_samples: int = BUDGETS["quick"].is_samples
    is_precision: str = "float32"  # the decoder's arithmetic inside IS-NLL (IS_PRECISIONS)
    settings: SharedSettings = field(default_factory=SharedSettings)
    binarization: str = "dynamic"
    device: str = "auto"
    metrics: list[str] | None = None  # None: every registered metric
    patience: int | None = None  # early stopping on the validation criterion; off by default
    select_epoch: str = "best-val"  # the evaluated weights: the best validation epoch, or the last
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_dir: Path | None = None

    def describe(self) -> dict:
        return {
            "dataset": self.dataset,
            "budget": self.budget,
            "epochs": self.epochs,
            "is_samples": self.is_samples,
            "is_precision": self.is_precision,
            "binarization": self.binarization,
            "seeds": self.seeds,
            "early_stopping_patience": self.patience,
            "select_epoch": self.select_epoch,
            **self.settings.as_dict(),
        }


SUITE_KEYS = {
    "variants", "seeds", "dataset", "budget", "epochs", "is_samples", "is_precision", "hidden", "latent_dim",
    "likelihood", "optimizer", "lr", "batch_size", "binarization", "device", "metrics",
    "patience", "select_epoch", "options", "data_dir",
}


def read_suite_file(path: Path) -> dict[str, Any]:
    """Parse a suite TOML into keyword arguments for :func:`make_suite`."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"suite file {path} does not exist; pass --suite with a TOML file (see benchmarks/)")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"suite file {path} is not valid TOML ({exc}); fix the syntax at that line") from None
    unknown = sorted(set(data) - SUITE_KEYS)
    if unknown:
        raise UsageError(
            f"suite file {path} has unknown key '{unknown[0]}'; known keys: {', '.join(sorted(SUITE_KEYS))}"
        )
    return data


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"{name} must be a positive whole number, got {value!r}")
    return value


def make_suite(
    variants: list[str],
    seeds: int | list[int] = 1,
    dataset: str = "digits",
    budget: str = "quick",
    epochs: int | None = None,
    is_samples: int | None = None,
    is_precision: str = "float32",
    hidden: list[int] | tuple[int, ...] | None = None,
    latent_dim: int | None = None,
    likelihood: str | None = None,
    optimizer: str | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    binarization: str = "dynamic",
    device: str = "auto",
    metrics: list[str] | None = None,
    patience: int | None = None,
    select_epoch: str = "best-val",
    options: dict[str, dict[str, Any]] | None = None,
    data_dir: str | Path | None = None,
) -> Suite:
    """Validate the values and build a :class:`Suite` (registry checks come later)."""
    if budget not in BUDGETS:
        raise UsageError(f"unknown budget '{budget}'; known budgets: {', '.join(BUDGETS)}")
    preset = BUDGETS[budget]
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seed_list = list(range(_positive_int("--seeds", seeds)))
    elif isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds):
        seed_list = list(seeds)
    else:
        raise UsageError(f"seeds must be a positive count or a list of non-negative seeds, got {seeds!r}")
    if binarization not in BINARIZATIONS:
        raise UsageError(f"unknown binarization '{binarization}'; choose one of {', '.join(BINARIZATIONS)}")
    if is_precision not in IS_PRECISIONS:
        raise UsageError(f"unknown IS precision '{is_precision}'; choose float32 (the default) or bfloat16 (faster decoder, see benchmarks/README.md)")
    if device not in DEVICES:
        raise UsageError(f"unknown device '{device}'; choose auto, cpu or cuda")
    settings = SharedSettings()
    changes: dict[str, Any] = {}
    if hidden is not None:
        if not isinstance(hidden, (list, tuple)) or not hidden:
            raise UsageError(f"hidden must be a list of layer widths, got {hidden!r}")
        changes["hidden"] = tuple(_positive_int("hidden width", h) for h in hidden)
    if latent_dim is not None:
        changes["latent_dim"] = _positive_int("--latent-dim", latent_dim)
    if batch_size is not None:
        changes["batch_size"] = _positive_int("--batch-size", batch_size)
    if lr is not None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise UsageError(f"--lr must be a positive number, got {lr!r}")
        changes["lr"] = float(lr)
    if likelihood is not None:
        if likelihood not in LIKELIHOODS:
            raise UsageError(f"unknown likelihood '{likelihood}'; choose one of {', '.join(LIKELIHOODS)}")
        changes["likelihood"] = likelihood
    if optimizer is not None:
        changes["optimizer"] = optimizer
    if binarization == "none" and changes.get("likelihood", settings.likelihood) == "bernoulli":
        raise UsageError("binarization 'none' keeps grey pixels, which a Bernoulli likelihood cannot score; use --likelihood gaussian or --binarization dynamic")
    if patience is not None:
        patience = _positive_int("--patience", patience)
    if select_epoch not in SELECT_EPOCHS:
        raise UsageError(f"unknown select_epoch '{select_epoch}'; choose best-val (the best validation epoch) or last")
    return Suite(
        variants=list(variants),
        seeds=seed_list,
        dataset=dataset,
        budget=budget,
        epochs=preset.epochs if epochs is None else _positive_int("--epochs", epochs),
        is_samples=preset.is_samples if is_samples is None else _positive_int("--is-samples", is_samples),
        is_precision=is_precision,
        settings=replace(settings, **changes),
        binarization=binarization,
        device=device,
        metrics=metrics,
        patience=patience,
        select_epoch=select_epoch,
        options=dict(options or {}),
        data_dir=Path(data_dir) if data_dir is not None else None,
    )


def resolve_device(choice: str) -> torch.device:
    """``auto`` picks CUDA when it is there; ``cuda`` without CUDA is a usage error."""
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for but CUDA is not available here; use --device cpu or auto")
        return torch.device("cuda")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
