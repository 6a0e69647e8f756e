"""Pluggy hook specifications for vaebench plugins.

A plugin is any module or object with functions marked ``@hookimpl``. Each
hook receives a ``register`` callback (the style of simonw/llm), so a plugin
can register any number of components::

    from vaebench import hookimpl

    @hookimpl
    def register_variants(register):
        register(MyVariant())

Plugins are found through the ``vaebench`` entry-point group.
"""

import pluggy

PROJECT = "vaebench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_variants(register):
    """Register model variants: ``register(variant)``; ``variant.name`` is its key."""


@hookspec
def register_datasets(register):
    """Register datasets: ``register(dataset_spec)``; ``dataset_spec.name`` is its key."""


@hookspec
def register_metrics(register):
    """Register metrics: ``register(metric)`` with ``name``, ``description``, ``columns`` (a tuple of
    :class:`vaebench.evaluation.context.Column`) and ``__call__(context) -> dict``; every declared
    column reaches the leaderboard."""


@hookspec
def register_priors(register):
    """Register priors: ``register(prior)``, a :class:`vaebench.components.PriorComponent` whose
    ``build(context)`` returns a :class:`vaebench.distributions.priors.Prior` (``log_prob(z) -> [B]``,
    ``sample(n) -> [n, D]``). Variants that accept priors use it: ``--prior NAME``."""


@hookspec
def register_objectives(register):
    """Register training objectives: ``register(objective)``, a
    :class:`vaebench.components.ObjectiveComponent` whose ``build(context)`` returns an objective
    ``(model, batch, progress) -> Terms`` (see vaebench.objectives). ``--objective NAME``."""


@hookspec
def register_callbacks(register):
    """Register callbacks: ``register(callback)`` with ``name`` and any of ``on_run_start(run)``,
    ``on_epoch_end(run, record)``, ``on_run_end(run, record)``; trackers and loggers are callbacks."""
