"""Reproductions: a run that names a published result reports ours at its K, the delta, and whether it is complete."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers import metrics_of
from vaebench.cli import main

SUITE = '''dataset = "digits"
hidden = [16]
latent_dim = 3
is_samples = 30
device = "cpu"
metrics = ["is_nll", "reference_nll"]
[runs.same-k]
variant = "gaussian"
epochs = 2
reference = {{ source = "a paper, Table 1", value = 25.0, samples = 30, epochs = 2 }}
[runs.other-k]
variant = "gaussian"
epochs = 2
reference = {{ source = "a paper, Table 2", value = 24.0, samples = {k}, epochs = 10 }}
'''


def test_a_reproduction_reports_ours_at_the_references_k_the_delta_and_shortened_runs(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(k=200))
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "out"), "-q"]) == 0
    same, other = metrics_of(tmp_path / "out", "same-k"), metrics_of(tmp_path / "out", "other-k")
    assert same["is_nll_reference_k"] == same["is_nll"]  # at the run's own K the estimate is is_nll's
    assert same["delta"] == pytest.approx(same["is_nll"] - 25.0) and same["reproduction"] == "complete"
    assert other["reference_samples"] == 200 and other["is_nll_reference_k"] != other["is_nll"]
    assert other["reproduction"] == "shortened: 2 of 10 epochs"
    assert "2 epochs" in other["setting"] and "latent 3" in other["setting"]
    board = pd.read_csv(tmp_path / "out/leaderboard.csv").set_index("run")
    assert board.loc["other-k", "reference"] == "a paper, Table 2"
    assert board.loc["same-k", "delta"] == pytest.approx(same["delta"])
