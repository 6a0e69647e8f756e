"""Suites: one typed settings schema behind flags, files and the API; named runs and grids; budgets."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from helpers import TINY, metrics_of, run_tiny
from vaebench.cli import build_parser, main
from vaebench.errors import UsageError
from vaebench.settings import FIELDS, RunSettings, make_settings
from vaebench.suite import make_suite, read_suite_file


def test_every_setting_has_a_flag_help_and_accepted_values():
    parser = build_parser()
    run = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith(" run"))
    flags = {option for action in run._actions for option in action.option_strings}
    for info in FIELDS.values():
        assert info.flag in flags, info.flag
        assert info.help and info.accepts, info.name
    assert RunSettings().describe()["epochs"] == 50 and RunSettings(budget="standard").describe()["is_samples"] == 5000


@pytest.mark.parametrize(
    "values,needles",
    [
        ({"lr": "nan"}, ["setting 'lr' (from --lr)", "finite positive"]),
        ({"lr": "inf"}, ["'lr'", "finite"]),
        ({"hidden": ""}, ["'hidden'", "widths"]),
        ({"metrics": ("", "")}, ["'metrics'", "metric"]),
        ({"epochs": "ten"}, ["'epochs'", "'ten'", "whole number"]),
        ({"epochs": 2, "steps": 3}, ["one budget unit", "--epochs and --steps"]),
        ({"lr_milestones": (5, 2)}, ["'lr_milestones'", "increasing"]),
        ({"lr_gamma": 2.0}, ["'lr_gamma'", "(0, 1]"]),
    ],
)
def test_a_bad_setting_names_itself_its_source_and_what_is_accepted(values, needles):
    with pytest.raises(UsageError) as error:
        make_settings(values, {k: "--" + k.replace("_", "-") for k in values})
    for needle in needles:
        assert needle in str(error.value), str(error.value)


def test_suite_file_errors_carry_file_and_line(tmp_path):
    path = tmp_path / "suite.toml"
    path.write_text('dataset = "digits"\nvariants = ["gaussian"]\n\n[runs.fast]\nvariant = "gaussian"\nlr = "quick"\n')
    parsed = read_suite_file(path)
    with pytest.raises(UsageError, match=rf"'lr' \(from {path}:6\) got 'quick'"):
        make_suite(parsed["variants"], runs=parsed["runs"], settings=parsed["settings"], sources=parsed["sources"], source=str(path))
    path.write_text('variants = {gaussian = 1}\n')
    with pytest.raises(UsageError, match=rf"variants \(from {path}:1\) must be a list"):
        parsed = read_suite_file(path)
        make_suite(parsed["variants"])
    path.write_text('variants = ["gaussian"]\n[runs.a]\nvariant = "gaussian"\nlearning_rate = 1\n')
    with pytest.raises(UsageError, match=rf"{path}:4: \[runs.a\] has unknown key 'learning_rate'"):
        read_suite_file(path)
    path.write_text('runs = 3\n')
    with pytest.raises(UsageError, match="'runs' must be a table"):
        read_suite_file(path)


def test_named_runs_and_a_grid_run_one_variant_with_several_settings(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'dataset = "digits"\nhidden = [16]\nlatent_dim = 4\nis_samples = 5\nepochs = 2\ndevice = "cpu"\nmetrics = ["elbo", "is_nll"]\n'
        'variants = ["gaussian"]\n\n'
        '[runs.gaussian-fast]\nvariant = "gaussian"\nlr = 3e-3\n\n'
        '[runs.iwae-k4]\nvariant = "gaussian"\nobjective = "iwae"\noptions = { k = 4 }\n\n'
        '[grids.beta]\nvariant = "kl-annealing"\noption = "warmup_fraction"\nvalues = [0.0, 0.5]\n'
    )
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "o"), "-q"]) == 0
    board = pd.read_csv(tmp_path / "o" / "leaderboard.csv").set_index("run")
    assert set(board.index) == {"gaussian", "gaussian-fast", "iwae-k4", "beta-warmup_fraction=0", "beta-warmup_fraction=0.5"}
    assert board.loc["gaussian-fast", "variant"] == "gaussian" and board.loc["iwae-k4", "variant"] == "gaussian"
    fast = json.loads((tmp_path / "o/runs/gaussian-fast/seed-0/config.json").read_text())
    assert fast["settings"]["lr"] == 3e-3 and fast["settings"]["hidden"] == [16]
    iwae = json.loads((tmp_path / "o/runs/iwae-k4/seed-0/config.json").read_text())
    assert iwae["component_options"]["iwae"] == {"k": 4} and iwae["objective_description"] == {"objective": "IWAE", "k": 4}
    grid = json.loads((tmp_path / "o/runs/beta-warmup_fraction=0.5/seed-0/config.json").read_text())
    assert grid["component_options"]["kl-annealing"]["warmup_fraction"] == 0.5


def test_an_ambiguous_or_unknown_option_is_refused_before_training(tmp_path, capsys):
    code = main(["run", "gaussian", "--prior", "mog", "--option", "components=3", "--out", str(tmp_path)])
    assert code == 0 or "ambiguous" not in capsys.readouterr().err  # only mog has `components` here: fine
    code = main(["run", "gaussian", "--option", "gaussian.nope=1", "--out", str(tmp_path / "x")])
    assert code == 2 and "has no option 'nope'" in capsys.readouterr().err


def test_the_api_checks_settings_as_the_cli_does(tmp_path):
    import vaebench

    with pytest.raises(UsageError, match=r"setting 'lr' \(from vaebench.run\(\)\) got -1.0"):
        vaebench.run(["gaussian"], out=tmp_path, lr=-1.0)
    board = vaebench.run(["gaussian"], out=tmp_path / "ok", epochs=1, hidden=(16,), latent_dim=2, is_samples=5, metrics=["elbo"], device="cpu")
    assert list(board["run"]) == ["gaussian"] and math.isfinite(board.loc[0, "neg_elbo"])


def test_a_budget_in_steps_or_seconds_records_what_each_run_received(tmp_path):
    run_tiny(tmp_path / "steps", ["gaussian", "latent-opt"], epochs=None, steps=25, metrics=["throughput"])
    for variant in ("gaussian", "latent-opt"):
        m = metrics_of(tmp_path / "steps", variant)
        assert m["steps_run"] == 25 and m["epochs_run"] == 3  # 11 steps per epoch: 11 + 11 + 3
        assert m["images_seen"] == 2 * 1294 + 3 * 128 and m["budget_unit"] == "steps" and m["train_seconds"] > 0
    run_tiny(tmp_path / "seconds", ["gaussian"], epochs=None, seconds=1.5, metrics=["throughput"])
    m = metrics_of(tmp_path / "seconds", "gaussian")
    assert m["budget_unit"] == "seconds" and 1.5 <= m["train_seconds"] < 10 and m["steps_run"] > 0
    caption = (tmp_path / "steps" / "leaderboard.md").read_text()
    assert "Budget 25 steps per run" in caption


def test_kl_annealing_refuses_a_budget_without_epochs(tmp_path):
    with pytest.raises(UsageError, match="kl-annealing schedules its KL weight over epochs"):
        run_tiny(tmp_path, ["kl-annealing"], epochs=None, steps=10)


def test_a_step_learning_rate_schedule_is_applied_and_logged(tmp_path):
    run_tiny(tmp_path, ["gaussian"], epochs=4, lr=1e-3, lr_milestones=(1, 3), lr_gamma=0.5, metrics=["throughput"])
    history = pd.read_csv(tmp_path / "runs/gaussian/seed-0/history.csv")
    assert list(history["lr"]) == pytest.approx([1e-3, 5e-4, 5e-4, 2.5e-4])


def test_a_tanh_activation_and_a_validation_size_are_settings(tmp_path):
    run_tiny(tmp_path, ["gaussian"], epochs=1, activation="tanh", val_images=300, metrics=["throughput"])
    config = json.loads((tmp_path / "runs/gaussian/seed-0/config.json").read_text())
    assert config["settings"]["activation"] == "tanh" and config["n_val"] == 300 and config["n_train"] == 1438 - 300
    from safetensors.torch import load_file

    assert "encoder.0.weight" in load_file(tmp_path / "runs/gaussian/seed-0/model.safetensors")


def test_evaluate_recomputes_saved_runs_without_retraining_and_keeps_the_old_values(tmp_path, capsys):
    run_tiny(tmp_path, ["gaussian", "ae-gmm"], epochs=2, seeds=2, metrics=["elbo", "is_nll"])
    before = {s: metrics_of(tmp_path, "gaussian", s) for s in (0, 1)}
    weights = (tmp_path / "runs/gaussian/seed-0/model.safetensors").read_bytes()
    # the same metrics again: the same numbers (each metric draws from its own seed)
    assert main(["evaluate", str(tmp_path), "--metrics", "elbo,is_nll", "-q"]) == 0
    again = metrics_of(tmp_path, "gaussian")
    assert again["is_nll"] == before[0]["is_nll"] and again["neg_elbo"] == before[0]["neg_elbo"]
    # another K, and a metric the runs never had
    assert main(["evaluate", str(tmp_path), "--is-samples", "40", "--metrics", "is_nll,nmi", "--runs", "gaussian", "-q"]) == 0
    after = metrics_of(tmp_path, "gaussian")
    assert after["is_samples"] == 40 and after["is_nll"] != before[0]["is_nll"] and 0 <= after["nmi"] <= 1
    assert after["neg_elbo"] == before[0]["neg_elbo"]  # metrics not run again keep their values
    assert (tmp_path / "runs/gaussian/seed-0/model.safetensors").read_bytes() == weights  # nothing retrained
    old = [json.loads(line) for line in (tmp_path / "runs/gaussian/seed-0/metrics_history.jsonl").read_text().splitlines()]
    assert [r["is_samples"] for r in old] == [20, 20] and old[0]["is_nll"] == before[0]["is_nll"]
    board = pd.read_csv(tmp_path / "leaderboard.csv").set_index("run")
    assert board.loc["gaussian", "nmi"] == pytest.approx((after["nmi"] + metrics_of(tmp_path, "gaussian", 1)["nmi"]) / 2)
    assert "mixed (20, 40)" in (tmp_path / "leaderboard.md").read_text()  # the K of each row is stated
    assert metrics_of(tmp_path, "ae-gmm")["is_samples"] == 20  # --runs gaussian left ae-gmm alone
    # --resume: an interrupted evaluate goes on; folders evaluated with these metrics and this K are kept
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path), "--is-samples", "40", "--metrics", "is_nll,nmi", "--resume", "-q"]) == 0
    assert "evaluated 2 run(s), kept 2 already evaluated" in capsys.readouterr().out
    assert metrics_of(tmp_path, "gaussian") == after and metrics_of(tmp_path, "ae-gmm")["is_samples"] == 40
    # a record made before its metric changed what it reports (here: a column it lacks) is evaluated again
    record_file = tmp_path / "runs/gaussian/seed-0/metrics.json"
    record = json.loads(record_file.read_text())
    record["columns"] = [c for c in record["columns"] if c["name"] != "is_nll_k_change"]
    record_file.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path), "--is-samples", "40", "--metrics", "is_nll,nmi", "--resume", "-q"]) == 0
    assert "evaluated 1 run(s), kept 3 already evaluated" in capsys.readouterr().out
    # a record older than the columns' "metric" key: evaluated again, it holds the new declarations only, and is kept after
    record = json.loads(record_file.read_text())
    record["columns"] = [{k: v for k, v in c.items() if k != "metric"} for c in record["columns"]]
    record_file.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path), "--is-samples", "40", "--metrics", "is_nll,nmi", "--resume", "-q"]) == 0
    assert "evaluated 1 run(s), kept 3 already evaluated" in capsys.readouterr().out
    names = [c["name"] for c in metrics_of(tmp_path, "gaussian")["columns"]]
    assert len(names) == len(set(names))
    owners = {c["name"]: c.get("metric") for c in metrics_of(tmp_path, "gaussian")["columns"]}
    assert owners["is_nll"] == "is_nll" and owners["nmi"] == "nmi"
    assert main(["evaluate", str(tmp_path), "--is-samples", "40", "--metrics", "is_nll,nmi", "--resume", "-q"]) == 0
    assert "evaluated 0 run(s), kept 4 already evaluated" in capsys.readouterr().out


def test_evaluate_leaves_every_training_measurement_as_training_measured_it(tmp_path):
    """Re-evaluating a finished run never changes a training column; the time columns add up."""
    from vaebench.execution.runner import TRAINING_FIELDS

    run_tiny(tmp_path, ["gaussian"], epochs=2, metrics=["elbo", "throughput"])
    trained = metrics_of(tmp_path, "gaussian")
    assert trained["train_images_per_s"] > 0 and trained["images_seen"] == 2 * trained["n_train"]
    assert trained["steps_run"] == 2 * -(-trained["n_train"] // trained["batch_size"]) and trained["peak_memory_mb"] > 0
    assert trained["train_wall_seconds"] >= trained["train_seconds"] > 0
    assert trained["wall_seconds"] == pytest.approx(trained["train_wall_seconds"] + trained["eval_seconds"])
    for metrics in ("elbo,throughput", "is_nll"):  # the metric that reports training again, and another one
        assert main(["evaluate", str(tmp_path), "-q", "--metrics", metrics]) == 0
        again = metrics_of(tmp_path, "gaussian")
        for name in TRAINING_FIELDS:
            assert again.get(name) == trained.get(name), (metrics, name)
        assert again["wall_seconds"] == pytest.approx(again["train_wall_seconds"] + again["eval_seconds"])
        assert again["wall_seconds"] >= again["train_seconds"] + again["eval_seconds"]
    board = pd.read_csv(tmp_path / "leaderboard.csv").set_index("run")
    assert board.loc["gaussian", "train_images_per_s"] == pytest.approx(trained["train_images_per_s"])


def test_evaluate_refuses_what_it_cannot_do(tmp_path, capsys):
    run_tiny(tmp_path, ["gaussian"], epochs=1, metrics=["elbo"])
    assert main(["evaluate", str(tmp_path), "--is-samples", "0"]) == 2
    assert "'is_samples'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--runs", "nope"]) == 2
    assert "has no run 'nope'" in capsys.readouterr().err
    (tmp_path / "runs/gaussian/seed-0/model.safetensors").unlink()
    assert main(["evaluate", str(tmp_path), "-q"]) == 0
    assert "no model.safetensors" in capsys.readouterr().err


def test_command_line_flags_win_over_run_tables_and_run_tables_may_name_their_seeds(tmp_path):
    from vaebench.cli import suite_from_args
    from vaebench.plugin_manager import load_plugins

    path = tmp_path / "suite.toml"
    path.write_text('seeds = [0, 1, 2]\nlr = 0.002\n[runs.few]\nvariant = "gaussian"\nseeds = [7]\nlr = 0.005\n'
                    '[runs.all]\nvariant = "gaussian"\n')
    plugins = load_plugins()

    def suite(*flags):
        args = build_parser().parse_args(["run", "--suite", str(path), *flags])
        made = suite_from_args(args, plugins)
        return made, {r.name: r for r in made.runs}

    s, runs = suite()
    assert s.seeds_of(runs["few"]) == [7] and s.seeds_of(runs["all"]) == [0, 1, 2]
    assert runs["few"].settings.lr == 0.005 and runs["all"].settings.lr == 0.002
    s, runs = suite("--lr", "0.0001", "--seeds", "2")
    assert runs["few"].settings.lr == 0.0001 and runs["all"].settings.lr == 0.0001
    assert s.seeds_of(runs["few"]) == [0, 1] and s.seeds_of(runs["all"]) == [0, 1]


def test_evaluates_progress_says_evaluating_not_training(tmp_path):
    import subprocess
    import sys

    run_tiny(tmp_path, ["gaussian"], epochs=1, metrics=["elbo"])
    result = subprocess.run([sys.executable, "-m", "vaebench", "evaluate", str(tmp_path), "--metrics", "elbo"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "gaussian seed 0: evaluating the saved model" in result.stderr and "training" not in result.stderr
