"""Reproductions: a run that names a published result reports ours at its K, the delta, and whether it is complete."""

from __future__ import annotations

import json

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
[runs.early]
variant = "gaussian"
epochs = 300
patience = 1
reference = {{ source = "a paper that stops early, Table 3", value = 24.0, samples = 30, epochs = 300 }}
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
    early = metrics_of(tmp_path / "out", "early")  # its schedule is its patience rule: stopped by it, the run is complete
    assert early["stopped_early"] and early["epochs_run"] < 300
    assert early["reproduction"] == f"complete, stopped early after {early['epochs_run']} epochs"
    board = pd.read_csv(tmp_path / "out/leaderboard.csv").set_index("run")
    assert board.loc["other-k", "reference"] == "a paper, Table 2"
    assert board.loc["same-k", "delta"] == pytest.approx(same["delta"])


def test_evaluate_measures_a_reproduction_again_and_a_plain_run_has_none(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(k=200) + '[runs.plain]\nvariant = "gaussian"\nepochs = 2\n')
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "-q"]) == 0
    first = {run: metrics_of(out, run) for run in ("same-k", "other-k", "early", "plain")}
    # a record from before config.json kept the published reference apart from the variant's literature
    config = out / "runs/other-k/seed-0/config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "reference": "Kingma & Welling 2014"}))
    assert main(["evaluate", str(out), "--metrics", "reference_nll", "-q"]) == 0
    for run in ("same-k", "other-k", "early", "plain"):  # "early" stays complete: the record keeps why it stopped
        again = metrics_of(out, run)
        assert again["metric_errors"] == {}, again["metric_errors"]
        assert set(again["evaluated_with"]["metrics"]) == {"is_nll", "reference_nll"}  # both values are held
        assert again["eval_seconds"] > first[run]["eval_seconds"]  # and the time behind both
        for key in ("reference", "reference_value", "reference_samples", "reproduction"):
            assert again.get(key) == first[run].get(key), (run, key)
        if first[run]["delta"] is not None:  # estimated again: equal within Monte Carlo noise
            assert again["delta"] == pytest.approx(first[run]["delta"], abs=0.1)
    assert metrics_of(out, "plain")["delta_na"].startswith("the run names no published result")
