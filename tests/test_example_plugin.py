"""The third-party example plugin in tests/example_plugin, pip-installed by CI."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

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
    assert records["example-beta"]["version"] == "0.2.0" and records["example-beta"]["status"] == "ok"


def test_example_plugin_runs_beside_a_builtin(tmp_path):
    result = vaebench("run", "example-beta-vae", "gaussian", "--budget", "smoke", "--hidden", "32", "--is-samples", "10", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    m = metrics_of(tmp_path, "example-beta-vae")
    assert m["status"] == "ok" and m["options"] == {"beta": 4.0}
    assert "example-beta-vae" in (tmp_path / "leaderboard.md").read_text()
