"""What each kind of component must have is checked as it registers (vaebench/contracts.py),
and no metric can replace another's column or what the harness records."""

from __future__ import annotations

import json
import math
import types

import pytest
import torch

from helpers import metrics_of, run_tiny
from test_plugin_contract import vaebench
from vaebench import hookimpl
from vaebench.components import PriorComponent
from vaebench.data import DatasetSpec
from vaebench.evaluation.context import Column
from vaebench.plugin_manager import load_plugins


def plugin(hook: str, obj) -> types.SimpleNamespace:
    def register_hook(register):
        register(obj)

    register_hook.__name__ = hook
    return types.SimpleNamespace(**{hook: hookimpl(register_hook)})


class Named:
    def __init__(self, name):
        self.name = name


class PriorWithoutBuild(PriorComponent):
    name = "no-build"


class MetricWithColumns:
    description = "a metric"

    def __init__(self, name, *columns):
        self.name = name
        self.columns = tuple(Column(c, "lower", "nats", c) for c in columns)

    def __call__(self, ctx):
        return {c.name: 1.0 for c in self.columns}


@pytest.mark.parametrize("hook, obj, needles", [
    ("register_variants", Named("v"), ["variant 'v'", "not a vaebench.variant.Variant", "subclass Variant"]),
    ("register_priors", PriorWithoutBuild(), ["prior 'no-build'", "does not implement build(context)"]),
    ("register_objectives", Named("o"), ["objective 'o'", "not a vaebench.components.ObjectiveComponent"]),
    ("register_datasets", Named("d"), ["dataset 'd'", "has no load(data_dir)", "DatasetSpec"]),
    ("register_datasets", DatasetSpec("half", "bad fraction", lambda d: None, val_fraction=1.5), ["val_fraction", "1.5"]),
    ("register_metrics", Named("m"), ["metric 'm'", "is not callable"]),
    ("register_callbacks", Named("c"), ["callback 'c'", "on_run_start, on_epoch_end, on_run_end"]),
], ids=["variant", "prior", "objective", "dataset", "dataset-fraction", "metric", "callback"])
def test_an_object_that_lacks_what_its_kind_needs_is_refused_when_it_registers(hook, obj, needles):
    plugins = load_plugins(extra=[("bad-plugin", plugin(hook, obj))])
    record = next(r for r in plugins.records if r.name == "bad-plugin")
    assert record.status == "error" and record.error.startswith("refused:") and "plugin 'bad-plugin'" in record.error
    for needle in needles:
        assert needle in record.error, record.error
    assert record.registered == {}  # nothing of it is used
    assert all(r.status == "ok" for r in plugins.records if r.name != "bad-plugin")  # the built-ins are untouched


def test_vaebench_plugins_shows_the_broken_plugin_and_a_run_is_refused_before_it_starts(tmp_path):
    listing = vaebench("-p", "vb_not_a_variant", "plugins", "--json")
    assert listing.returncode == 0
    shown = {r["name"]: r for r in json.loads(listing.stdout)}["vb_not_a_variant"]
    assert shown["status"] == "error" and "not a vaebench.variant.Variant" in shown["error"] and shown["registered"] == {}
    assert listing.stderr.count("\n") == 1 and "vb_not_a_variant" in listing.stderr  # one line says so as it loads
    run = vaebench("-p", "vb_not_a_variant", "run", "not-a-variant", "--budget", "smoke", "--out", str(tmp_path))
    assert run.returncode == 2 and "unknown variant 'not-a-variant'" in run.stderr and "Traceback" not in run.stderr
    assert "AttributeError" not in run.stderr


def test_a_column_belongs_to_the_first_metric_that_declares_it():
    plugins = load_plugins(extra=[("impostor", plugin("register_metrics", MetricWithColumns("fake-elbo", "neg_elbo")))])
    record = next(r for r in plugins.records if r.name == "impostor")
    assert "declares column 'neg_elbo', which metric 'elbo' from plugin 'metrics' owns" in record.error
    assert "fake-elbo" not in plugins.registry.names("metric")
    twice = load_plugins(extra=[("a", plugin("register_metrics", MetricWithColumns("one", "shared"))),
                                ("b", plugin("register_metrics", MetricWithColumns("two", "shared")))])
    second = next(r for r in twice.records if r.name == "b")
    assert "metric 'one' from plugin 'a' owns" in second.error and "one" in twice.registry.names("metric")


class Overwriter:
    """Declares a column of its own, and returns the built-in -ELBO and a setting besides."""

    name = "overwriter"
    description = "returns values that are not its own"
    columns = (Column("overwriter_value", "none", "", "its own value"),)

    def __call__(self, ctx):
        return {"overwriter_value": 1.0, "neg_elbo": -999.0, "lr": 123.0, "train_seconds": 0.0}


def test_a_metric_cannot_replace_another_metrics_value_or_what_the_harness_recorded(tmp_path):
    plugins = load_plugins(extra=[("overwriter", plugin("register_metrics", Overwriter()))])
    run_tiny(tmp_path, ["gaussian"], epochs=2, metrics=("elbo", "overwriter"), plugins=plugins)
    m = metrics_of(tmp_path, "gaussian")
    assert m["overwriter_value"] == 1.0
    assert math.isfinite(m["neg_elbo"]) and m["neg_elbo"] > 0  # the built-in's, not -999
    assert m["lr"] == 1e-3 and m["train_seconds"] > 0
    error = m["metric_errors"]["overwriter"]
    assert "'neg_elbo' (metric 'elbo' owns it)" in error and "'lr' (the harness records it)" in error and "dropped" in error


def test_p_finds_a_module_in_the_current_folder(tmp_path):
    import subprocess
    import sys

    (tmp_path / "my_metric_here.py").write_text(
        "from vaebench import hookimpl\n"
        "from vaebench.evaluation.context import Column\n"
        "class Here:\n"
        "    name = 'here'\n"
        "    description = 'a metric in the current folder'\n"
        "    columns = (Column('here_value', 'none', '', 'one'),)\n"
        "    def __call__(self, ctx):\n"
        "        return {'here_value': 1.0}\n"
        "@hookimpl\n"
        "def register_metrics(register):\n"
        "    register(Here())\n"
    )
    environment = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-m", "vaebench", "-p", "my_metric_here", "list", "--json"], cwd=tmp_path,
                            capture_output=True, text=True, env=environment)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert ("metric", "here") in {(r["kind"], r["name"]) for r in json.loads(result.stdout)}
    missing = subprocess.run([sys.executable, "-m", "vaebench", "-p", "not_anywhere_at_all", "list"], cwd=tmp_path,
                             capture_output=True, text=True, env=environment)
    assert "not_anywhere_at_all" in missing.stderr and "ModuleNotFoundError" in missing.stderr  # still one line saying what


class StudentT(PriorComponent):
    """A prior plugin that sets no label of its own."""

    name = "student-t"
    options = {"df": 3.0}

    def build(self, context):
        from torch.distributions import Independent, StudentT as T

        from vaebench.distributions.priors import Prior

        class StudentTPrior(Prior):
            def __init__(self, dim, df):
                super().__init__()
                self.register_buffer("df", torch.full((dim,), df))

            def distribution(self):
                return Independent(T(self.df), 1)

        return StudentTPrior(context.settings.latent_dim, context.options["df"])


class EpochCounter:
    name = "epoch-counter"
    description = "counts epochs (always on)"
    seen: list = []

    def on_epoch_end(self, run, record):
        self.seen.append(record["epoch"])


def test_a_run_records_what_ran_the_prior_by_its_registered_name_and_every_plugin_by_version(tmp_path):
    from vaebench.variant import Variant

    shapes = []

    class ShapeReader(Variant):
        name = "shape-reader"
        description = "the gaussian VAE, noting the image shape it is given"
        accepts_prior = True

        def build(self, context):
            shapes.append(context.image_shape)
            return load_plugins().registry.get("variant", "gaussian").build(context)

    plugins = load_plugins(extra=[("t-prior", plugin("register_priors", StudentT())),
                                  ("counter", plugin("register_callbacks", EpochCounter())),
                                  ("shapes", plugin("register_variants", ShapeReader()))])
    from vaebench.suite import make_suite
    from vaebench.execution.runner import run_suite
    from helpers import TINY

    suite = make_suite(["shape-reader"], 1, prior="student-t", epochs=2, metrics=("elbo",), **TINY)
    run_suite(suite, plugins, tmp_path)
    run = "shape-reader+student-t"
    assert metrics_of(tmp_path, run)["latent"] == "student-t(df=3) 4-d"  # not the N(0,I) of an unlabelled prior
    assert shapes and all(shape == (1, 8, 8) for shape in shapes)  # the digits are 8x8, one channel
    config = json.loads((tmp_path / "runs" / run / "seed-0" / "config.json").read_text())
    assert config["dataset_plugin"] == {"name": "digits", "plugin": "datasets", "distribution": "vaebench", "version": config["vaebench_version"]}
    assert {"name": "epoch-counter", "plugin": "counter", "distribution": None, "version": None, "kind": "callback"} in config["callbacks"]
    assert config["components"]["prior"]["plugin"] == "t-prior" and EpochCounter.seen == [0, 1]


class Misbehaving:
    """A metric whose one column gets what ``kind`` says: an exit, a set, NaN, text, or only an undeclared name."""

    description = "misbehaves on purpose"

    def __init__(self, kind):
        self.kind = kind
        self.name = f"bad-{kind}"
        self.columns = (Column(f"bad_{kind}", "lower", "nats", "a number"),)

    def __call__(self, ctx):
        column = f"bad_{self.kind}"
        if self.kind == "exit":
            raise SystemExit(0)
        return {"set": {column: {1, 2}}, "nan": {column: math.nan}, "text": {column: "abc"},
                "undeclared": {"something_else": 1.0}}[self.kind]


def test_a_metric_that_exits_or_returns_garbage_costs_only_its_column_and_says_why(tmp_path):
    kinds = ("exit", "set", "nan", "text", "undeclared")
    plugins = load_plugins(extra=[(f"bad-{k}", plugin("register_metrics", Misbehaving(k))) for k in kinds])
    run_tiny(tmp_path, ["gaussian"], epochs=1, seeds=2, metrics=("elbo", *(f"bad-{k}" for k in kinds)), plugins=plugins)
    for seed in (0, 1):  # the second seed ran: an exit in a metric does not end the command
        m = metrics_of(tmp_path, "gaussian", seed)
        assert m["status"] == "ok" and math.isfinite(m["neg_elbo"])
        errors = m["metric_errors"]
        assert errors["bad-exit"] == "SystemExit: 0"
        assert "'bad_set' as a set, which JSON cannot hold" in errors["bad-set"]
        assert "'bad_nan' as nan" in errors["bad-nan"] and "'bad_text' as str in a numeric column" in errors["bad-text"]
        assert "none of its columns (bad_undeclared)" in errors["bad-undeclared"]
        for kind in kinds:
            assert m[f"bad_{kind}"] is None and m[f"bad_{kind}_na"], kind
    text = (tmp_path / "runs/gaussian/seed-0/metrics.json").read_text()
    assert "NaN" not in text and json.loads(text)  # strict JSON
    board = (tmp_path / "leaderboard.md").read_text()
    assert "bad-set" in board and "which JSON cannot hold" in board  # the row's notes say why
