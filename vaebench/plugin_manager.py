"""The plugin manager: built-ins and installed packages load the same way.

Every plugin, built-in or third-party, is an entry point in the ``vaebench``
group. Each load and each hook call is wrapped, so one broken plugin is
reported on one stderr line and the others still work; ``strict=True`` makes
such a failure fatal. No plugin manager exists at import time: callers build
one with :func:`load_plugins` (tests build a fresh one per test).
"""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from vaebench import hookspecs
from vaebench.errors import DuplicateName, PluginError, UnknownName

log = logging.getLogger("vaebench.plugins")

# hook name -> the kind of component it registers
HOOK_KINDS = {
    "register_datasets": "dataset",
    "register_variants": "variant",
    "register_metrics": "metric",
    "register_priors": "prior",
}


@dataclass
class PluginRecord:
    """What one plugin is, what it registered and whether it works."""

    name: str
    module: str
    version: str | None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    @property
    def status(self) -> str:
        return "ok" if self.error is None else "error"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "version": self.version,
            "hooks": self.hooks,
            "registered": self.registered,
            "status": self.status,
            "error": self.error,
        }


class Registry:
    """Components by kind and name, each remembering the plugin that registered it."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {kind: {} for kind in HOOK_KINDS.values()}
        self._owners: dict[str, dict[str, str]] = {kind: {} for kind in HOOK_KINDS.values()}

    def add(self, kind: str, obj: Any, plugin: str) -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"a registered {kind} needs a non-empty string attribute 'name', got {obj!r}")
        if name in self._items[kind]:
            raise DuplicateName(kind, name, self._owners[kind][name], plugin)
        self._items[kind][name] = obj
        self._owners[kind][name] = plugin

    def drop_plugin(self, plugin: str) -> None:
        for kind, owners in self._owners.items():
            for name in [n for n, p in owners.items() if p == plugin]:
                del owners[name]
                del self._items[kind][name]

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

    @property
    def failures(self) -> list[PluginRecord]:
        return [r for r in self.records if r.error is not None]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _version_of(entry_point) -> str | None:
    dist = getattr(entry_point, "dist", None)
    return getattr(dist, "version", None) if dist is not None else None


def _registerer(registry: Registry, kind: str, plugin: str) -> Callable[[Any], None]:
    def register(obj: Any) -> None:
        registry.add(kind, obj, plugin)

    return register


def load_plugins(
    strict: bool = False,
    entry_points: Iterable | None = None,
    extra: Iterable[tuple[str, Any]] = (),
) -> Plugins:
    """Build a fresh plugin manager and registry.

    ``entry_points`` defaults to the installed ``vaebench`` group; ``extra``
    adds ``(name, plugin_object)`` pairs directly (tests use it).
    Failures are logged as one line each, or raised as :class:`PluginError`
    when ``strict`` is true.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=hookspecs.PROJECT)

    records: list[PluginRecord] = []
    candidates: list[tuple[PluginRecord, Callable[[], Any]]] = []
    for ep in entry_points:
        record = PluginRecord(name=ep.name, module=ep.value, version=_version_of(ep))
        candidates.append((record, ep.load))
    for name, obj in extra:
        module = getattr(obj, "__name__", type(obj).__name__)
        candidates.append((PluginRecord(name=name, module=module, version=None), lambda obj=obj: obj))

    for record, load in candidates:
        records.append(record)
        try:
            plugin = load()
            if manager.is_registered(plugin):
                raise PluginError(f"module {record.module} is already registered by another entry point")
            manager.register(plugin, name=record.name)
        except Exception as exc:  # a plugin's import may raise anything
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
    by_name = {r.name: r for r in records}
    for hook_name, kind in HOOK_KINDS.items():
        caller = getattr(manager.hook, hook_name)
        # pluggy calls the last registered first; go in registration order instead
        for impl in sorted(caller.get_hookimpls(), key=lambda i: list(by_name).index(i.plugin_name)):
            record = by_name[impl.plugin_name]
            if record.error is not None:
                continue
            try:
                impl.function(register=_registerer(registry, kind, record.name))
            except Exception as exc:
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
    return Plugins(manager=manager, registry=registry, records=records)
