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
def register_trackers(register):
    """Register trackers, which a user opts into with ``--tracker NAME``: ``register(tracker)`` with
    ``name``, ``description``, optionally ``requires = (module, install hint)`` (checked before any
    training), and any of ``on_run_start(run)``, ``on_epoch_end(run, record)``, ``on_run_end(run, record)``:
    ``run`` holds run, seed, run_dir, settings and variant; ``record`` an epoch's numbers (epoch,
    loss, the objective's logs, val_neg_elbo, lr, train_seconds) or the finished run's metrics.json.
    A tracker that raises costs a warning, never the run."""


@hookspec
def register_callbacks(register):
    """Register always-on callbacks, the same methods as a tracker: they run for every run of every
    user of an environment where the plugin is installed, unasked. Anything a user should choose
    (logging to a service, writing extra files) is a tracker (``register_trackers``) instead."""
