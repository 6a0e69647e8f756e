"""The Variant interface: a recipe of model, prior, objective and defaults.

A plugin registers an object with ``name``, ``description``, ``reference``,
``options`` (its own defaults, overridable per suite) and
``build(context) -> Recipe``. Everything shared across a suite (widths, latent
size, likelihood, optimizer, learning rate, batch size, budget) arrives in
:class:`BuildContext` and must be used as given, so that runs are matched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from vaebench.errors import UsageError


@dataclass(frozen=True)
class SharedSettings:
    """What every variant in a suite shares."""

    hidden: tuple[int, ...] = (400,)
    latent_dim: int = 20
    likelihood: str = "bernoulli"
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 128

    def as_dict(self) -> dict:
        return {
            "hidden": list(self.hidden),
            "latent_dim": self.latent_dim,
            "likelihood": self.likelihood,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "batch_size": self.batch_size,
        }


@dataclass(frozen=True)
class BuildContext:
    """What a variant may read when it builds its recipe.

    ``dataset`` is the dataset's registered name, for settings that depend on the
    data (gumbel-capacity's capacities, as in JointVAE's per-dataset configurations).
    """

    settings: SharedSettings
    x_dim: int
    n_classes: int
    n_train: int
    epochs: int
    options: dict = field(default_factory=dict)
    dataset: str = ""


@dataclass
class Recipe:
    """A built variant.

    ``param_groups(lr)`` returns optimizer parameter groups (default: one group
    of all parameters at the shared ``lr``). ``post_training(model, data)`` runs
    once after the last epoch and returns values to record (the GMM fit).
    ``epoch_metrics(model, data)`` runs after every epoch and adds values to the
    history (gumbel-capacity's NMI curve).
    ``latent`` describes the latent space for results rows.

    ``grad_clip`` bounds gradient norms after each backward pass: one number clips all
    parameters jointly; a mapping ``{submodule: max_norm}`` clips each named submodule
    of the model on its own (bernoulli-sfe clips its encoder's score-function gradient
    apart from its decoder's, as reference 000 does).

    ``validation`` scores the model on the validation split after every epoch (lower is
    better); the runner keeps the best epoch's weights when the suite selects on
    validation, and early stopping waits on it. ``None`` means the variant cannot be
    validated cheaply; ``no_validation_reason`` then says why, and the last epoch is used.
    ``note`` is one line for the leaderboard's table note: what the row is, where the
    variant departs from its reference.
    """

    model: nn.Module
    objective: Any
    latent: str
    param_groups: Callable[[float], list[dict]] | None = None
    grad_clip: float | dict[str, float] | None = None
    post_training: Callable[[nn.Module, Any], dict] | None = None
    epoch_metrics: Callable[[nn.Module, Any], dict] | None = None
    validation: Any = field(default_factory=lambda: _default_validation())
    no_validation_reason: str = ""
    note: str = ""


def _default_validation():
    from vaebench.validation import ValidationNegELBO

    return ValidationNegELBO()


class Variant:
    """Base class for variants: subclasses set the attributes and implement ``build``."""

    name: str = ""
    description: str = ""
    reference: str = ""
    options: dict[str, Any] = {}
    # leaderboard columns computed against another variant of the same suite:
    # {column: (other_variant, metric)} gives other[metric] - self[metric]
    comparisons: dict[str, tuple[str, str]] = {}

    def resolve_options(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """The variant's defaults with ``overrides`` applied; unknown keys are a usage error."""
        unknown = sorted(set(overrides) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise UsageError(f"variant '{self.name}' has no option '{unknown[0]}'; its options are: {known}")
        resolved = dict(self.options)
        for key, value in overrides.items():
            resolved[key] = _coerce(self.name, key, value, self.options[key])
        return resolved

    def build(self, context: BuildContext) -> Recipe:
        raise NotImplementedError


def _coerce(variant: str, key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("on", "true", "yes", "1"):
            return True
        if text in ("off", "false", "no", "0"):
            return False
    elif isinstance(default, (int, float)):
        try:
            number = type(default)(value)
        except (TypeError, ValueError):
            number = None
        if number is not None:
            return number
    else:
        return value
    raise UsageError(f"option {variant}.{key}={value!r} is not a valid {type(default).__name__}; the default is {default!r}")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def default_param_groups(model: nn.Module) -> Callable[[float], list[dict]]:
    return lambda lr: [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]


def make_optimizer(name: str, groups: list[dict]) -> torch.optim.Optimizer:
    # fused: one kernel updates every parameter (CPU and CUDA); the per-parameter
    # loop is a large share of a small model's training step on the CPU.
    if name == "adam":
        return torch.optim.Adam(groups, fused=True)
    if name == "adamax":
        return torch.optim.Adamax(groups, foreach=True)
    if name == "sgd":
        return torch.optim.SGD(groups, momentum=0.9, fused=True)
    raise UsageError(f"unknown optimizer '{name}'; choose adam, adamax or sgd")
