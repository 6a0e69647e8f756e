"""The Variant interface: a recipe of model, prior, objective and defaults.

A plugin registers a :class:`Variant` with ``name``, ``description``, ``reference``,
``options`` (its own defaults, overridable per run) and ``build(context) -> Recipe``.
Everything shared across a suite (widths, latent size, activation, likelihood,
optimizer, learning rate, batch size, budget) arrives in ``context.settings`` and
must be used as given, so that runs are matched.

A variant that can take another prior or objective (``--prior``, ``--objective``)
says so with ``accepts_prior`` / ``accepts_objective`` and uses ``context.prior`` /
``context.objective`` when they are set (see ``plugins/gaussian.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from torch import nn

from vaebench.components import Component
from vaebench.settings import RunSettings


@dataclass(frozen=True)
class BuildContext:
    """What a component may read when it builds.

    ``dataset`` is the dataset's registered name, for settings that depend on the
    data (gumbel-capacity's capacities, as in JointVAE's per-dataset configurations).
    ``image_shape`` is (channels, height, width) of the images, which arrive flattened
    to ``x_dim`` values (a convolutional variant reshapes them with it).
    ``prior`` and ``objective`` are the run's replacements (built components), or ``None``;
    a replacement prior's ``label`` is its registered name and options (``mog(components=16)``).
    """

    settings: RunSettings
    x_dim: int
    n_classes: int
    n_train: int
    epochs: int | None
    options: dict = field(default_factory=dict)
    dataset: str = ""
    image_shape: tuple[int, ...] = ()
    prior: Any = None
    objective: Any = None


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
    from vaebench.execution.validation import ValidationNegELBO

    return ValidationNegELBO()


class Variant(Component):
    """Base class for variants: subclasses set the attributes and implement ``build``."""

    kind: ClassVar[str] = "variant"
    accepts_prior: bool = False  # builds its model around context.prior when one is given
    accepts_objective: bool = False  # trains with context.objective when one is given

    def build(self, context: BuildContext) -> Recipe:
        raise NotImplementedError


def count_parameters(module: nn.Module) -> int:
    """The model's free parameters: the trainable ones, plus those fitted another way.

    A submodule whose numbers are fitted outside gradient descent (ae-gmm's mixture, filled
    by sklearn, kept as buffers) says how many free parameters it holds with
    ``fitted_parameters()``; every row's count then means the same thing."""
    fitted = sum(int(m.fitted_parameters()) for m in module.modules() if callable(getattr(m, "fitted_parameters", None)))
    return sum(p.numel() for p in module.parameters()) + fitted
