"""What each kind of component must have, checked when a plugin registers it.

A mistake in a plugin (a variant that is not a :class:`~vaebench.variant.Variant`, a dataset
without ``load``, a metric without columns) is refused at registration with one line naming
the plugin, the component and what it lacks, and ``vaebench plugins`` shows the plugin as
broken; it never surfaces mid-run as an ``AttributeError``. A column name belongs to the
first metric that declares it: a second declaration is refused the same way. What a metric
returns cannot replace another metric's columns nor what the harness records itself (the
settings, what training measured, the run's identity): ``evaluate`` drops such values and
says so. No plugin can replace another component's numbers.
"""

from __future__ import annotations

from typing import Any, Callable

CALLBACK_METHODS = ("on_run_start", "on_epoch_end", "on_run_end")


class ContractError(Exception):
    """A registered object lacks what its kind requires (the message says what)."""


def _overrides(obj: Any, base: type, method: str) -> bool:
    return getattr(type(obj), method, None) is not getattr(base, method, None)


def _variant(obj: Any) -> str | None:
    from vaebench.variant import Variant

    if not isinstance(obj, Variant):
        return f"is a {type(obj).__name__}, not a vaebench.variant.Variant; subclass Variant (it brings the option handling)"
    if not _overrides(obj, Variant, "build"):
        return "does not implement build(context) -> Recipe"
    return None


def _built(base_name: str, what: str) -> Callable[[Any], str | None]:
    def check(obj: Any) -> str | None:
        from vaebench import components

        base = getattr(components, base_name)
        if not isinstance(obj, base):
            return f"is a {type(obj).__name__}, not a vaebench.components.{base_name}; subclass {base_name}"
        if not _overrides(obj, base, "build"):
            return f"does not implement build(context) -> {what}"
        return None

    return check


def _dataset(obj: Any) -> str | None:
    if not callable(getattr(obj, "load", None)):
        return "has no load(data_dir) -> RawData; register a vaebench.data.DatasetSpec(name, description, load)"
    for key in ("val_fraction", "test_fraction"):
        value = getattr(obj, key, None)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
            return f"needs {key}, a fraction in (0, 1) (vaebench.data.DatasetSpec has defaults), got {value!r}"
    return None


def _metric(obj: Any) -> str | None:
    from vaebench.evaluation.context import Column

    if not callable(obj):
        return "is not callable; a metric is called with the evaluation context and returns values by column name"
    columns = getattr(obj, "columns", ())  # none: a metric that only writes files (the pictures)
    if not isinstance(columns, (tuple, list)):
        return f"has columns = {columns!r}; give it a tuple of vaebench.evaluation.context.Column(...)"
    wrong = [c for c in columns if not isinstance(c, Column)]
    if wrong:
        return f"has a column that is not a vaebench.evaluation.context.Column: {wrong[0]!r}"
    return None


def _callback(obj: Any) -> str | None:
    if not any(callable(getattr(obj, method, None)) for method in CALLBACK_METHODS):
        return f"has none of {', '.join(CALLBACK_METHODS)}"
    return None


def _tracker(obj: Any) -> str | None:
    requires = getattr(obj, "requires", None)
    if requires is not None and not (isinstance(requires, tuple) and len(requires) == 2 and all(isinstance(r, str) for r in requires)):
        return f"has requires = {requires!r}; give it (module name, install hint) or leave it out"
    return _callback(obj)


CHECKS: dict[str, Callable[[Any], str | None]] = {
    "variant": _variant,
    "prior": _built("PriorComponent", "Prior"),
    "objective": _built("ObjectiveComponent", "an objective"),
    "dataset": _dataset,
    "metric": _metric,
    "callback": _callback,
    "tracker": _tracker,
}


def check(kind: str, obj: Any, plugin: str) -> None:
    """Raise :class:`ContractError` when ``obj`` lacks what a ``kind`` needs."""
    problem = CHECKS[kind](obj) if kind in CHECKS else None
    if problem:
        raise ContractError(f"{kind} '{getattr(obj, 'name', '?')}' from plugin '{plugin}' {problem}")


def check_columns(metric: Any, plugin: str, owners: dict[str, tuple[str, str]]) -> None:
    """Refuse a metric whose column another metric already owns (``owners``: column -> (metric,
    plugin)); on success the metric's columns are added to ``owners``."""
    mine = [c.name for c in getattr(metric, "columns", ())]
    for name in mine:
        if name in owners:
            other, other_plugin = owners[name]
            raise ContractError(f"metric '{metric.name}' from plugin '{plugin}' declares column '{name}', which metric "
                                f"'{other}' from plugin '{other_plugin}' owns; rename the column")
    if len(set(mine)) != len(mine):
        raise ContractError(f"metric '{metric.name}' from plugin '{plugin}' declares a column twice")
    owners.update({name: (metric.name, plugin) for name in mine})
