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
    """Register metrics: ``register(metric)``; ``metric.name`` is its key."""


@hookspec
def register_priors(register):
    """Register priors: ``register(prior_spec)`` with ``.name`` and ``.build(latent_dim) -> Prior``."""
