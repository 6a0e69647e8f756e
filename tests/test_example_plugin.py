"""The third-party example plugin in tests/example_plugin, pip-installed by CI."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from helpers import metrics_of

pytestmark = pytest.mark.skipif(
    not any(ep.name == "example-beta" for ep in importlib.metadata.entry_points(group="vaebench")),
    reason="the example plugin is not installed: pip install ./tests/example_plugin",
)


def vaebench(*args):
    return subprocess.run([sys.executable, "-m", "vaebench", *args], capture_output=True, text=True)


def test_example_plugin_shows_in_list_and_plugins():
    rows = json.loads(vaebench("list", "--json").stdout)
    assert {"kind": "variant", "name": "example-beta-vae", "plugin": "example-beta"}.items() <= next(
        r for r in rows if r["name"] == "example-beta-vae"
    ).items()
    records = {r["name"]: r for r in json.loads(vaebench("plugins", "--json").stdout)}
    assert records["example-beta"]["version"] == "0.3.0" and records["example-beta"]["status"] == "ok"
    assert records["example-beta"]["registered"] == {
        "variant": ["example-beta-vae"], "dataset": ["example-bars"], "prior": ["example-laplace"], "objective": ["example-free-bits"],
        "metric": ["example_posterior_scale"], "tracker": ["example-csv"]}


def test_example_plugin_runs_beside_a_builtin(tmp_path):
    result = vaebench("run", "example-beta-vae", "gaussian", "--budget", "smoke", "--hidden", "32", "--is-samples", "10", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    m = metrics_of(tmp_path, "example-beta-vae")
    assert m["status"] == "ok" and m["options"] == {"beta": 4.0}
    assert "example-beta-vae" in (tmp_path / "leaderboard.md").read_text()


SUITE = Path(__file__).parent / "example_plugin" / "suites" / "every-kind.toml"


def test_one_suite_with_every_kind_of_the_example_plugin_reaches_the_table_config_and_plugins(tmp_path):
    result = vaebench("run", "--suite", str(SUITE), "--tracker", "example-csv", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    runs = ["gaussian", "laplace-free-bits", "beta-beta=1", "beta-beta=4"]  # a grid names its rows GRID-OPTION=VALUE
    board = pd.read_csv(tmp_path / "leaderboard.csv").set_index("run")
    assert sorted(board.index) == sorted(runs) and (board["status"] == "ok").all()
    assert board["example_posterior_scale"].between(0, 10).all() and board["is_nll"].notna().all()  # the plugin's metric
    for run in runs:
        config = json.loads((tmp_path / "runs" / run / "seed-0" / "config.json").read_text())
        assert config["dataset_plugin"]["plugin"] == "example-beta" and config["dataset_plugin"]["version"] == "0.3.0"
        assert config["components"]["metrics"]["example_posterior_scale"]["plugin"] == "example-beta"
        assert [(c["name"], c["kind"], c["plugin"]) for c in config["callbacks"]] == [("example-csv", "tracker", "example-beta")]
        with (tmp_path / "runs" / run / "seed-0" / "epochs.csv").open() as handle:  # the plugin's tracker wrote every epoch
            assert [int(float(row["epoch"])) for row in csv.DictReader(handle)] == [0, 1]
    free_bits = json.loads((tmp_path / "runs/laplace-free-bits/seed-0/config.json").read_text())
    assert free_bits["components"]["prior"]["plugin"] == "example-beta" and free_bits["components"]["objective"]["name"] == "example-free-bits"
    assert metrics_of(tmp_path, "laplace-free-bits")["latent"] == "example-laplace(scale=1) 4-d"
    assert metrics_of(tmp_path, "beta-beta=4")["options"] == {"beta": 4.0}
    assert "| beta-beta=4 |" in (tmp_path / "leaderboard.md").read_text()
    untracked = vaebench("run", "gaussian", "--dataset", "example-bars", "--budget", "smoke", "--hidden", "16", "--metrics", "elbo",
                         "--out", str(tmp_path / "plain"))
    assert untracked.returncode == 0 and not (tmp_path / "plain/runs/gaussian/seed-0/epochs.csv").exists()  # a tracker is opt-in


def test_the_readmes_variant_dataset_and_tracker_examples_are_the_example_plugins_code():
    import re

    import vaebench_example

    source = Path(vaebench_example.__file__).read_text()
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    regions = re.findall(r"# readme: (\w+)\n(.*?)# end readme\n", source, flags=re.S)
    assert [name for name, _ in regions] == ["variant", "dataset", "tracker", "hooks"]
    for name, code in regions:
        assert code in readme, f"the README's {name} example differs from tests/example_plugin/vaebench_example/__init__.py"
