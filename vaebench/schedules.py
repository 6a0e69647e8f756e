"""Training progress and the schedules that are explicit functions of it.

Schedules (KL weight, capacity targets) never hide inside a loss: an
objective is given a schedule and the :class:`Progress` of the step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """Where training is: ``epoch`` and ``step_in_epoch`` count from 0.

    ``total_steps`` is the budget in steps when it is known (an epoch or step budget);
    a budget in seconds gives ``time_fraction`` instead.
    """

    epoch: int
    step_in_epoch: int
    steps_per_epoch: int
    epochs: int
    total_steps: int | None = None
    time_fraction: float | None = None

    @property
    def step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step_in_epoch

    @property
    def fraction(self) -> float:
        """Fraction of the training budget done before this step, in [0, 1)."""
        if self.time_fraction is not None:
            return self.time_fraction
        total = self.total_steps if self.total_steps is not None else self.epochs * self.steps_per_epoch
        return self.step / max(1, total)


@dataclass(frozen=True)
class Constant:
    value: float

    def __call__(self, progress: Progress) -> float:
        return self.value


@dataclass(frozen=True)
class KLWarmup:
    """KL weight 0 for ``warmup_epochs``, then linear to 1 over ``anneal_epochs`` (reference 004).

    The weight is constant within an epoch. Epochs ``0 .. warmup_epochs - 1`` get 0;
    the annealing epochs ``warmup_epochs .. warmup_epochs + anneal_epochs - 1`` get
    ``1/anneal_epochs, 2/anneal_epochs, ..., 1``, so the last annealing epoch already
    trains at weight 1; every later epoch gets 1.
    """

    warmup_epochs: int
    anneal_epochs: int

    def __call__(self, progress: Progress) -> float:
        if progress.epoch < self.warmup_epochs:
            return 0.0
        if self.anneal_epochs <= 0:
            return 1.0
        return min(1.0, (progress.epoch - self.warmup_epochs + 1) / self.anneal_epochs)


@dataclass(frozen=True)
class LinearRamp:
    """Rises linearly from 0 to ``final`` over the first ``ramp_fraction`` of the budget."""

    final: float
    ramp_fraction: float = 1.0

    def __call__(self, progress: Progress) -> float:
        return self.final * min(1.0, progress.fraction / self.ramp_fraction)
