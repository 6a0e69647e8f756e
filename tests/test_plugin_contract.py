"""The plugin contract, as a user meets it: third-party metric, prior and objective plugins
loaded with -p or VAEBENCH_PLUGINS, combined with the built-ins, and reaching the table."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from helpers import metrics_of

PLUGINS = Path(__file__).parent / "plugins_for_tests"
TINY = ["--budget", "smoke", "--hidden", "16", "--latent-dim", "4", "--is-samples", "5", "--device", "cpu"]


def vaebench(*args, env=None):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return subprocess.run([sys.executable, "-m", "vaebench", *args], capture_output=True, text=True, env=environment)


def test_a_metric_plugin_loaded_with_p_reaches_every_leaderboard_format(tmp_path):
    result = vaebench("-p", "vb_active_units", "run", "gaussian", "--seeds", "2", "--metrics", "elbo,units_in_use", *TINY, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    csv = pd.read_csv(tmp_path / "leaderboard.csv").set_index("run")
    assert {"units_in_use", "units_in_use_std"} <= set(csv.columns)
    values = [metrics_of(tmp_path, "gaussian", s)["units_in_use"] for s in (0, 1)]
    assert csv.loc["gaussian", "units_in_use"] == pytest.approx(sum(values) / 2)
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    assert board["columns"]["units_in_use"]["direction"] == "higher" and board["columns"]["units_in_use"]["unit"] == "dimensions"
    assert "units_in_use" in board["rows"][0]
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "units_in_use" in markdown and "Cov_x(E_q[z_d" in markdown  # the column and its description
    plugins = {p["name"]: p for p in json.loads(vaebench("-p", "vb_active_units", "plugins", "--json").stdout)}
    assert plugins["vb_active_units"]["source"] == "-p" and plugins["vb_active_units"]["registered"] == {"metric": ["units_in_use"]}


def test_vaebench_plugins_env_loads_like_p():
    listed = json.loads(vaebench("list", "--json", env={"VAEBENCH_PLUGINS": "vb_active_units,vb_laplace"}).stdout)
    names = {(r["kind"], r["name"]) for r in listed}
    assert {("metric", "units_in_use"), ("prior", "laplace"), ("objective", "beta-elbo")} <= names


def test_disable_plugin_turns_one_off():
    listed = json.loads(vaebench("--disable-plugin", "kl-annealing", "list", "--json").stdout)
    assert "kl-annealing" not in {r["name"] for r in listed} and "gaussian" in {r["name"] for r in listed}
    listed = json.loads(vaebench("list", "--json", env={"VAEBENCH_DISABLE_PLUGINS": "mog-prior"}).stdout)
    assert "mog-prior" not in {r["name"] for r in listed}


def test_a_builtin_model_with_a_third_party_prior_and_objective(tmp_path):
    result = vaebench("-p", "vb_laplace", "run", "gaussian", "--prior", "laplace", "--objective", "beta-elbo",
                      "--option", "beta-elbo.beta=2", *TINY, "--metrics", "elbo,is_nll", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    name = "gaussian+laplace+beta-elbo+beta=2"  # the row name says what differs
    m = metrics_of(tmp_path, name)
    assert m["status"] == "ok" and math.isfinite(m["is_nll"]) and m["latent"] == "laplace 4-d"  # the registered name, whatever label the Prior carries
    config = json.loads((tmp_path / "runs" / name / "seed-0" / "config.json").read_text())
    assert config["components"]["prior"] == {"name": "laplace", "plugin": "vb_laplace", "distribution": None, "version": None}
    assert config["components"]["variant"]["plugin"] == "gaussian" and config["components"]["variant"]["distribution"] == "vaebench"
    assert config["component_options"]["beta-elbo"] == {"beta": 2.0}
    assert config["objective_description"]["objective"] == "WeightedKL"


def test_builtin_vampprior_and_iwae_through_their_hooks(tmp_path):
    result = vaebench("run", "gaussian", "--prior", "vampprior", "--objective", "iwae", "--option", "iwae.k=3",
                      "--option", "vampprior.components=8", *TINY, "--metrics", "elbo,is_nll", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    name = "gaussian+vampprior+iwae+k=3+components=8"
    m = metrics_of(tmp_path, name)
    assert m["status"] == "ok" and m["is_nll"] <= m["neg_elbo"] + 0.5 and m["latent"] == "vampprior(components=8) 4-d"
    history = pd.read_csv(tmp_path / "runs" / name / "seed-0" / "history.csv")
    assert {"iwae_bound", "elbo"} <= set(history.columns)
    assert (history["iwae_bound"] >= history["elbo"] - 1e-3).all()  # the k-sample bound is at least the ELBO estimate


def test_a_third_party_model_with_a_builtin_prior(tmp_path):
    pytest.importorskip("vaebench_example", reason="the example plugin is not installed: pip install ./tests/example_plugin")
    result = vaebench("run", "example-beta-vae", "--prior", "mog", "--option", "mog.components=3", *TINY, "--metrics", "elbo", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    m = metrics_of(tmp_path, "example-beta-vae+mog+components=3")
    assert m["status"] == "ok" and m["latent"] == "mog(components=3) 4-d"


def test_a_variant_that_takes_no_prior_says_which_do(tmp_path):
    result = vaebench("run", "bernoulli-sfe", "--prior", "vampprior", *TINY, "--out", str(tmp_path))
    assert result.returncode == 2 and "takes no prior" in result.stderr and "gaussian" in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "runs").exists()


def test_a_plugin_that_exits_at_import_costs_only_itself():
    result = vaebench("-p", "vb_exits", "list", "--json")
    assert result.returncode == 0
    assert "plugin 'vb_exits'" in result.stderr and "sys.exit(3)" in result.stderr and result.stderr.count("\n") == 1
    assert "gaussian" in {r["name"] for r in json.loads(result.stdout)}
    assert vaebench("--strict", "-p", "vb_exits", "list").returncode == 2


def test_a_second_registration_of_a_name_is_refused_naming_both_plugins():
    result = vaebench("-p", "vb_duplicate", "list", "--json")
    assert result.returncode == 0
    line = result.stderr.strip()
    assert "'gaussian'" in line and "plugin 'vb_duplicate'" in line and "refused" in line and line.count("\n") == 0
    variants = {r["name"]: r["plugin"] for r in json.loads(result.stdout) if r["kind"] == "variant"}
    assert variants["gaussian"] == "gaussian"  # the built-in stays


def test_a_metric_that_raises_costs_only_its_column(tmp_path):
    result = vaebench("-p", "vb_broken_metric", "run", "gaussian", *TINY, "--metrics", "elbo,broken,nmi", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("this metric is broken on purpose") == 1  # printed once
    m = metrics_of(tmp_path, "gaussian")
    assert m["status"] == "ok" and math.isfinite(m["neg_elbo"]) and math.isfinite(m["nmi"])
    assert m["broken_value"] is None and "broken on purpose" in m["metric_errors"]["broken"]
    board = pd.read_csv(tmp_path / "leaderboard.csv").set_index("run")
    assert math.isnan(board.loc["gaussian", "broken_value"])


def test_the_readmes_plugin_examples_run_as_written(tmp_path):
    """The metric, prior and objective in the README's plugin section, loaded with -p, each under 40 lines."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Writing a plugin"):]
    section = section[: section.index("\n## ", 3)]
    blocks = [block.split("```")[0] for block in section.split("```python\n")[1:]][:2]  # the rest: the example plugin's code
    assert len(blocks) == 2 and all(len(b.splitlines()) < 40 for b in blocks)
    (tmp_path / "readme_metric.py").write_text(blocks[0])
    (tmp_path / "readme_components.py").write_text(blocks[1])
    result = vaebench("-p", "readme_metric", "-p", "readme_components", "run", "gaussian", "--prior", "laplace", "--objective", "beta-elbo",
                      *TINY, "--metrics", "elbo,units_in_use", "--out", str(tmp_path / "o"), env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    m = metrics_of(tmp_path / "o", "gaussian+laplace+beta-elbo")
    assert m["status"] == "ok" and 0 <= m["units_in_use"] <= 4 and math.isfinite(m["neg_elbo"])
