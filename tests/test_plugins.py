"""The plugin layer: loading, isolation of broken plugins, duplicates, strict mode."""

from __future__ import annotations

import types

import pytest

from vaebench import hookimpl
from vaebench.errors import PluginError, UnknownName
from vaebench.plugin_manager import load_plugins
from vaebench.variant import Variant


class FakeEntryPoint:
    def __init__(self, name, target, version="1.0"):
        self.name, self.value = name, f"fake.{name}"
        self._target = target
        self.dist = types.SimpleNamespace(version=version)

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


class Named(Variant):
    """A variant that is only a name (registration needs no more than the contract)."""

    def __init__(self, name):
        self.name = name

    def build(self, context):
        raise NotImplementedError


def plugin_registering(*names, kind="variants"):
    module = types.ModuleType("plugin_" + "_".join(names))

    def register_variants(register):
        for n in names:
            register(Named(n))

    module.register_variants = hookimpl(register_variants)
    return module


def test_builtins_are_plugins_like_any_other(plugins):
    names = {r.name for r in plugins.records}
    assert {"gaussian", "datasets", "metrics"} <= names
    assert plugins.registry.owner("variant", "gaussian") == "gaussian"
    assert plugins.registry.owner("dataset", "digits") == "datasets"
    assert all(r.status == "ok" for r in plugins.records), [r.error for r in plugins.failures]


def test_good_plugin_registers_with_provenance():
    p = load_plugins(entry_points=[FakeEntryPoint("good", plugin_registering("alpha", "beta"), "2.3")])
    assert p.registry.names("variant") == ["alpha", "beta"]
    record = p.records[0]
    assert record.version == "2.3" and record.hooks == ["register_variants"]
    assert record.registered == {"variant": ["alpha", "beta"]}


def test_import_failure_is_one_line_and_others_still_work(caplog):
    eps = [FakeEntryPoint("broken", ImportError("no module named torchx")), FakeEntryPoint("good", plugin_registering("alpha"))]
    with caplog.at_level("WARNING"):
        p = load_plugins(entry_points=eps)
    assert p.registry.names("variant") == ["alpha"]
    assert [r.name for r in p.failures] == ["broken"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "'broken'" in lines[0] and "torchx" in lines[0] and "\n" not in lines[0]


def test_hook_that_raises_is_isolated_and_rolled_back():
    module = types.ModuleType("raiser")

    def register_variants(register):
        register(Named("half"))
        raise RuntimeError("boom")

    module.register_variants = hookimpl(register_variants)
    p = load_plugins(entry_points=[FakeEntryPoint("raiser", module), FakeEntryPoint("good", plugin_registering("alpha"))])
    assert p.registry.names("variant") == ["alpha"]  # the half registration is dropped
    assert "boom" in p.failures[0].error


def test_strict_makes_failures_fatal():
    with pytest.raises(PluginError, match="broken"):
        load_plugins(strict=True, entry_points=[FakeEntryPoint("broken", ImportError("x"))])


def test_duplicate_name_names_both_plugins():
    eps = [FakeEntryPoint("first", plugin_registering("same")), FakeEntryPoint("second", plugin_registering("same"))]
    p = load_plugins(entry_points=eps)
    assert p.registry.owner("variant", "same") == "first"
    error = p.failures[0].error
    assert "'first'" in error and "'second'" in error and "'same'" in error
    with pytest.raises(PluginError, match="first.*second"):
        load_plugins(strict=True, entry_points=eps)


def test_misspelt_hook_is_reported():
    module = types.ModuleType("typo")
    module.register_variant = hookimpl(lambda register: None)  # missing the s
    p = load_plugins(entry_points=[FakeEntryPoint("typo", module)])
    assert p.failures and "register_variant" in p.failures[0].error


def test_unknown_name_lists_known_names():
    p = load_plugins(entry_points=[FakeEntryPoint("good", plugin_registering("alpha", "beta"))])
    with pytest.raises(UnknownName, match="known variants: alpha, beta"):
        p.registry.get("variant", "gamma")


def test_each_call_builds_a_fresh_manager():
    a = load_plugins(entry_points=[FakeEntryPoint("good", plugin_registering("alpha"))])
    b = load_plugins(entry_points=[])
    assert a.manager is not b.manager and b.registry.names("variant") == []
