"""The plugin manager: built-ins, installed packages and ``-p`` modules load the same way.

Every plugin, built-in or third-party, is an entry point in the ``vaebench`` group, or
a module named with ``-p MODULE`` / ``VAEBENCH_PLUGINS=mod1,mod2`` (pytest's
conventions). ``--disable-plugin NAME`` / ``VAEBENCH_DISABLE_PLUGINS`` skip one.
vaebench's own plugins load first, so a third-party plugin can never replace a
built-in: a second registration of a name is refused with an error naming both
plugins. Each load and each hook call is wrapped, so one broken plugin (an import
error, ``sys.exit`` at import, a raising hook) is reported on one stderr line and
the others still work; ``strict=True`` makes such a failure fatal. No plugin
manager exists at import time: callers build one with :func:`load_plugins`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from vaebench import contracts, hookspecs
from vaebench.contracts import ContractError
from vaebench.errors import DuplicateName, PluginError, UnknownName

log = logging.getLogger("vaebench.plugins")

PLUGINS_ENV = "VAEBENCH_PLUGINS"
DISABLE_ENV = "VAEBENCH_DISABLE_PLUGINS"
OWN_DISTRIBUTION = "vaebench"

# hook name -> the kind of component it registers
HOOK_KINDS = {
    "register_datasets": "dataset",
    "register_variants": "variant",
    "register_metrics": "metric",
    "register_priors": "prior",
    "register_objectives": "objective",
    "register_trackers": "tracker",
    "register_callbacks": "callback",
}
KINDS = tuple(HOOK_KINDS.values())


@dataclass
class PluginRecord:
    """What one plugin is, where it comes from, what it registered and whether it works."""

    name: str
    module: str
    version: str | None
    distribution: str | None = None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    source: str = "entry point"  # or "-p", or VAEBENCH_PLUGINS

    @property
    def status(self) -> str:
        return "ok" if self.error is None else "error"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "source": self.source,
            "hooks": self.hooks,
            "registered": self.registered,
            "status": self.status,
            "error": self.error,
        }


class Registry:
    """Components by kind and name, each remembering the plugin that registered it.

    Each object is checked against its kind's contract (:mod:`vaebench.contracts`) as it
    registers, and a metric's column names belong to the first metric that declares them.
    """

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self._owners: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        self.column_owners: dict[str, tuple[str, str]] = {}  # column -> (metric, plugin)

    def add(self, kind: str, obj: Any, plugin: str) -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise ContractError(f"a {kind} from plugin '{plugin}' needs a non-empty string attribute 'name', got {obj!r}")
        if name in self._items[kind]:
            raise DuplicateName(kind, name, self._owners[kind][name], plugin)
        contracts.check(kind, obj, plugin)
        if kind == "metric":
            contracts.check_columns(obj, plugin, self.column_owners)
        self._items[kind][name] = obj
        self._owners[kind][name] = plugin

    def drop_plugin(self, plugin: str) -> None:
        for kind, owners in self._owners.items():
            for name in [n for n, p in owners.items() if p == plugin]:
                del owners[name]
                del self._items[kind][name]
        self.column_owners = {column: owner for column, owner in self.column_owners.items() if owner[1] != plugin}

    def get(self, kind: str, name: str) -> Any:
        try:
            return self._items[kind][name]
        except KeyError:
            raise UnknownName(kind, name, self._items[kind]) from None

    def names(self, kind: str) -> list[str]:
        return list(self._items[kind])

    def owner(self, kind: str, name: str) -> str:
        return self._owners[kind][name]

    def owned_by(self, plugin: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for kind, owners in self._owners.items():
            names = [n for n, p in owners.items() if p == plugin]
            if names:
                out[kind] = names
        return out


@dataclass
class Plugins:
    """The loaded plugin manager, the registry it filled, and one record per plugin."""

    manager: pluggy.PluginManager
    registry: Registry
    records: list[PluginRecord]
    load_args: dict = field(default_factory=dict)  # the arguments of load_plugins: worker processes load the same

    @property
    def failures(self) -> list[PluginRecord]:
        return [r for r in self.records if r.error is not None]

    def provenance(self, kind: str, name: str) -> dict[str, str | None]:
        """Which plugin, distribution and version a component comes from (recorded with every run)."""
        plugin = self.registry.owner(kind, name)
        record = next(r for r in self.records if r.name == plugin)
        return {"name": name, "plugin": plugin, "distribution": record.distribution, "version": record.version}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _distribution_of(entry_point) -> tuple[str | None, str | None]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return None, None
    name = getattr(dist, "name", None) or (dist.metadata["Name"] if hasattr(dist, "metadata") else None)
    return name, getattr(dist, "version", None)


def _registerer(registry: Registry, kind: str, plugin: str) -> Callable[[Any], None]:
    def register(obj: Any) -> None:
        registry.add(kind, obj, plugin)

    return register


def _split_env(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _module_version(module_name: str) -> tuple[str | None, str | None]:
    """The distribution that provides a ``-p`` module, where importlib.metadata knows it."""
    top = module_name.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    if not dists:
        return None, None
    try:
        return dists[0], importlib.metadata.version(dists[0])
    except importlib.metadata.PackageNotFoundError:
        return dists[0], None


def import_plugin_module(name: str):
    """Import a ``-p`` module; one that is not importable but lies in the current folder is found
    there, as ``python -m`` and ``pytest -p`` find it (the folder joins ``sys.path`` for that)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        here = os.getcwd()
        if exc.name != name.split(".")[0] or here in sys.path:
            raise
        sys.path.insert(0, here)
        return importlib.import_module(name)


def load_plugins(
    strict: bool = False,
    entry_points: Iterable | None = None,
    extra: Iterable[tuple[str, Any]] = (),
    modules: Iterable[str] = (),
    disable: Iterable[str] = (),
    environment: bool = True,
) -> Plugins:
    """Build a fresh plugin manager and registry.

    ``entry_points`` defaults to the installed ``vaebench`` group (vaebench's own first);
    ``modules`` are ``-p`` module names (with ``VAEBENCH_PLUGINS`` when ``environment``);
    ``disable`` names plugins to skip (with ``VAEBENCH_DISABLE_PLUGINS``); ``extra`` adds
    ``(name, plugin_object)`` pairs directly (tests use it). Failures are logged as one
    line each, or raised as :class:`PluginError` when ``strict`` is true.
    """
    given_entry_points = None if entry_points is None else list(entry_points)
    entry_points, modules_given, disable, extra = given_entry_points, list(modules), list(disable), list(extra)
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    if entry_points is None:
        installed = list(importlib.metadata.entry_points(group=hookspecs.PROJECT))
        entry_points = sorted(installed, key=lambda ep: (_distribution_of(ep)[0] != OWN_DISTRIBUTION,))
    modules = list(modules) + (_split_env(PLUGINS_ENV) if environment else [])
    disabled = set(disable) | (set(_split_env(DISABLE_ENV)) if environment else set())

    records: list[PluginRecord] = []
    candidates: list[tuple[PluginRecord, Callable[[], Any]]] = []
    for ep in entry_points:
        if ep.name in disabled:
            continue
        dist_name, version = _distribution_of(ep)
        candidates.append((PluginRecord(name=ep.name, module=ep.value, version=version, distribution=dist_name), ep.load))
    for module_name in modules:
        if module_name in disabled:
            continue
        dist_name, version = _module_version(module_name)
        source = "-p" if module_name not in _split_env(PLUGINS_ENV) else PLUGINS_ENV
        record = PluginRecord(name=module_name, module=module_name, version=version, distribution=dist_name, source=source)
        candidates.append((record, lambda m=module_name: import_plugin_module(m)))
    for name, obj in extra:
        if name in disabled:
            continue
        module = getattr(obj, "__name__", type(obj).__name__)
        candidates.append((PluginRecord(name=name, module=module, version=None, source="extra"), lambda obj=obj: obj))

    for record, load in candidates:
        records.append(record)
        if any(r.name == record.name for r in records[:-1]):
            record.error = f"failed to load: another plugin is already named '{record.name}'"
            continue
        try:
            plugin = load()
            if manager.is_registered(plugin):
                raise PluginError(f"module {record.module} is already registered by another plugin")
            manager.register(plugin, name=record.name)
        except (Exception, SystemExit) as exc:  # a plugin's import may raise anything, or exit
            record.error = f"failed to load: {_describe(exc)}"
            continue
        record.hooks = sorted(caller.name for caller in manager.get_hookcallers(plugin) or [])

    # A misspelt hook name (say ``register_variant``) is reported, not ignored.
    while True:
        try:
            manager.check_pending()
            break
        except pluggy.PluginValidationError as exc:
            name = manager.get_name(exc.plugin)
            record = next(r for r in records if r.name == name)
            record.error = f"unknown hook: {_describe(exc)}"
            manager.unregister(name=name)

    registry = Registry()
    order = [r.name for r in records]
    by_name = {r.name: r for r in records}
    for hook_name, kind in HOOK_KINDS.items():
        caller = getattr(manager.hook, hook_name)
        # pluggy calls the last registered first; go in loading order instead (built-ins first)
        for impl in sorted(caller.get_hookimpls(), key=lambda i: order.index(i.plugin_name)):
            record = by_name[impl.plugin_name]
            if record.error is not None:
                continue
            try:
                impl.function(register=_registerer(registry, kind, record.name))
            except (DuplicateName, ContractError) as exc:
                record.error = f"refused: {exc}"
                registry.drop_plugin(record.name)
            except (Exception, SystemExit) as exc:
                record.error = f"{hook_name} raised {_describe(exc)}"
                registry.drop_plugin(record.name)

    for record in records:
        record.registered = registry.owned_by(record.name)
        if record.error is not None:
            message = f"plugin '{record.name}'" + (f" {record.version}" if record.version else "")
            message += f" ({record.module}) {record.error}"
            if strict:
                raise PluginError(message)
            log.warning("%s; skipped (--strict makes this fatal)", message)
    load_args = dict(strict=strict, entry_points=given_entry_points, extra=list(extra),
                     modules=list(modules_given), disable=list(disable), environment=environment)
    return Plugins(manager=manager, registry=registry, records=records, load_args=load_args)
