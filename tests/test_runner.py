"""The runner end to end: run folders, determinism, leaderboards, failure isolation, resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import types

import pandas as pd
import pytest
import torch
from torch.distributions import Bernoulli, Independent

from helpers import metrics_of, run_tiny
from vaebench import hookimpl
from vaebench.cli import main
from vaebench.distributions import StandardNormalPrior
from vaebench.models import GaussianVAE
from vaebench.objectives import ELBO, Terms
from vaebench.plugin_manager import load_plugins
from vaebench.reporting.leaderboard import caption, leaderboard, rebuild, to_markdown
from vaebench.errors import TrainingFailure
from vaebench.execution.records import read_csv_exact
from vaebench.execution.training import EpochLog
from vaebench.variant import Recipe, Variant


def test_gaussian_smoke_run_writes_everything(tmp_path):
    result = run_tiny(tmp_path, ["gaussian"], epochs=2)
    run = tmp_path / "runs" / "gaussian" / "seed-0"
    for name in ("config.json", "metrics.json", "history.csv", "model.safetensors", "checkpoint.pt", "is_nll_per_example.csv",
                 "samples.png", "samples_probs.png", "reconstructions.png", "latent_scatter.png", "loss_curves.png"):
        assert (run / name).exists(), name
    m = metrics_of(tmp_path, "gaussian")
    assert m["status"] == "ok" and m["binarization"] == "dynamic" and m["is_samples"] == 20
    assert m["neg_elbo"] == pytest.approx(m["neg_elbo_reconstruction"] + m["neg_elbo_kl"])
    assert m["is_nll"] < m["neg_elbo"]  # IS tightens the bound on a trained model
    assert set(m) >= {"is_nll_class_0", "is_nll_train", "nmi", "nmi_method", "train_images_per_s", "peak_memory_mb", "n_parameters"}
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [0, 1] and history["val_neg_elbo"].notna().all()
    per_example = pd.read_csv(run / "is_nll_per_example.csv")
    assert set(per_example["split"]) == {"test", "train"} and len(per_example) == 359 + 359  # train subset: as many as the test split
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(board.columns[:6]) == ["run", "rank", "variant", "dataset", "status", "seeds"]
    for column in ("neg_elbo", "is_nll", "nmi", "train_images_per_s", "n_parameters", "amortization_gap"):
        assert column in board and column + "_std" in board, column
    assert list(board.columns).index("neg_elbo") < list(board.columns).index("is_nll")  # the metrics' declared order
    assert (tmp_path / "leaderboard.md").read_text().count("gaussian") >= 1
    assert result.failures == []


def test_same_seed_same_numbers_and_seeds_differ(tmp_path):
    run_tiny(tmp_path / "a", ["gaussian"], seeds=2)
    run_tiny(tmp_path / "b", ["gaussian"], seeds=1)
    a0, a1, b0 = metrics_of(tmp_path / "a", "gaussian", 0), metrics_of(tmp_path / "a", "gaussian", 1), metrics_of(tmp_path / "b", "gaussian", 0)
    for key in ("neg_elbo", "is_nll", "nmi"):
        assert a0[key] == b0[key]
    assert a0["neg_elbo"] != a1["neg_elbo"]
    board = pd.read_csv(tmp_path / "a" / "leaderboard.csv")
    assert board.loc[0, "seeds"] == 2
    assert board.loc[0, "neg_elbo"] == pytest.approx((a0["neg_elbo"] + a1["neg_elbo"]) / 2)
    assert board.loc[0, "neg_elbo_std"] == pytest.approx(abs(a0["neg_elbo"] - a1["neg_elbo"]) / 2**0.5)  # sample std, ddof = 1
    assert board.loc[0, "seed_list"] == "0,1" and "over seeds 0,1" in (tmp_path / "a" / "leaderboard.md").read_text()


def test_leaderboard_rebuilds_from_run_folders_alone(tmp_path, capsys):
    run_tiny(tmp_path, ["gaussian", "kl-annealing"], epochs=2, metrics=["elbo", "throughput"])
    written = read_csv_exact(tmp_path / "leaderboard.csv")
    (tmp_path / "leaderboard.csv").unlink()
    rebuilt = rebuild(tmp_path)
    assert rebuilt.to_csv(index=False) == written.to_csv(index=False)
    for fmt in ("csv", "json", "md", "table"):
        assert main(["leaderboard", str(tmp_path), "--format", fmt]) == 0
        assert "kl-annealing" in capsys.readouterr().out


class RecordingReporter:
    def __init__(self):
        self.events = []

    def start(self, run, epochs):
        self.events.append(("start", run, epochs))

    def epoch(self, run, record):
        self.events.append(("epoch", run, record["epoch"]))

    def stage(self, run, text):
        self.events.append(("stage", run, text))

    def finish(self, run, status):
        self.events.append(("finish", run, status))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_epoch_log_keeps_cuda_tensors_on_the_device():
    log = EpochLog(steps=1, device=torch.device("cuda"))  # tensors say cuda:0
    log.add(0, {"loss": torch.tensor(1.0, device="cuda"), "kl_weight": 0.5})
    assert log.on_device == ["loss"]
    assert log.read()[1].tolist() == [[1.0, 0.5]]


def test_progress_shows_each_metric_after_training(tmp_path):
    reporter = RecordingReporter()
    run_tiny(tmp_path, ["gaussian"], epochs=2, metrics=["elbo", "is_nll"], reporter=reporter)
    run = "gaussian seed 0"
    events = [e for e in reporter.events if e[0] != "stage" or e[2].startswith("evaluating ")]
    assert events == [
        ("start", run, 2),
        ("epoch", run, 0),
        ("epoch", run, 1),
        ("stage", run, "evaluating elbo"),
        ("stage", run, "evaluating is_nll"),
        ("finish", run, "ok"),
    ]
    eta = [e[2] for e in reporter.events if e[0] == "stage" and e[2].startswith("is_nll test")]
    assert eta and eta[-1].startswith("is_nll test 359/359 images, ETA")  # IS-NLL reports its progress


def test_metric_selection_skips_the_expensive_metrics(tmp_path):
    run_tiny(tmp_path, ["gaussian"], epochs=1, metrics=["throughput"])
    m = metrics_of(tmp_path, "gaussian")
    assert m["train_images_per_s"] > 0 and "is_nll" not in m and "neg_elbo" not in m
    assert not (tmp_path / "runs/gaussian/seed-0/is_nll_per_example.csv").exists()


def test_bfloat16_is_changes_only_is_nll_and_says_so_in_every_row_and_the_caption(tmp_path):
    for precision in ("float32", "bfloat16"):
        run_tiny(tmp_path / precision, ["gaussian"], epochs=1, metrics=["elbo", "is_nll"], is_precision=precision)
    fp32, bf16 = metrics_of(tmp_path / "float32", "gaussian"), metrics_of(tmp_path / "bfloat16", "gaussian")
    assert (fp32["is_precision"], bf16["is_precision"]) == ("float32", "bfloat16")
    assert fp32["neg_elbo"] == bf16["neg_elbo"]  # same training, and the ELBO is always float32
    assert fp32["is_nll"] != bf16["is_nll"] and abs(fp32["is_nll"] - bf16["is_nll"]) < 0.05
    assert "decoder in" not in (tmp_path / "float32" / "leaderboard.md").read_text()
    assert "K = 20 (decoder in bfloat16)" in (tmp_path / "bfloat16" / "leaderboard.md").read_text()
    assert pd.read_csv(tmp_path / "bfloat16" / "leaderboard.csv").loc[0, "is_precision"] == "bfloat16"


def test_caption_lists_settings_that_differ_between_rows():
    common = {"dataset": "digits", "status": "ok", "binarization": "dynamic", "budget": "quick", "epochs": 50, "elbo_split": "test"}
    runs = pd.DataFrame(
        [
            {**common, "variant": "a", "seed": 0, "is_nll": 20.0, "is_samples": 1000},
            {**common, "variant": "b", "seed": 0, "is_nll": 21.0, "is_samples": 100, "is_precision": "bfloat16"},
        ]
    )
    text = caption(leaderboard(runs))
    assert "K = mixed (100, 1000) (decoder in mixed (bfloat16, float32))" in text
    assert "Dataset digits, binarization dynamic" in text and "Budget 50 epochs per run" in text
    assert text in to_markdown(leaderboard(runs))


class ExplodingObjective(ELBO):
    def __call__(self, model, batch, progress):
        terms = super().__call__(model, batch, progress)
        if progress.epoch == 1 and progress.step_in_epoch == 3:
            terms.logs["kl"] = terms.logs["kl"] * float("nan")
        return terms


class Exploding(Variant):
    name = "exploding"
    description = "goes non-finite at epoch 1, step 3"

    def build(self, context):
        s = context.settings
        model = GaussianVAE(context.x_dim, s.hidden, s.latent_dim, StandardNormalPrior(s.latent_dim))
        return Recipe(model, ExplodingObjective(), latent="test")


class Raising(Variant):
    name = "raising"
    description = "raises while building"

    def build(self, context):
        raise RuntimeError("no such layer")


class ScoresInDecoderPrecision(Independent):
    def log_prob(self, value):
        return super().log_prob(value).to(self.base_dist.logits.dtype)


class CarelessVAE(GaussianVAE):
    def likelihood(self, z, y=None):
        return ScoresInDecoderPrecision(Bernoulli(logits=self.decode(z, y), validate_args=False), 1)


class Careless(Variant):
    name = "careless"
    description = "its likelihood scores in the decoder's precision"

    def build(self, context):
        s = context.settings
        return Recipe(CarelessVAE(context.x_dim, s.hidden, s.latent_dim, StandardNormalPrior(s.latent_dim)), ELBO(), latent="test")


def failing_plugins():
    module = types.ModuleType("failing")
    module.register_variants = hookimpl(lambda register: (register(Exploding()), register(Raising()), register(Careless())))
    return load_plugins(extra=[("failing", module)])


def test_failed_runs_are_recorded_and_the_sweep_goes_on(tmp_path):
    result = run_tiny(tmp_path, ["exploding", "raising", "gaussian"], epochs=3, plugins=failing_plugins())
    assert {(v, s) for v, s, _ in result.failures} == {("exploding", 0), ("raising", 0)}
    exploding = metrics_of(tmp_path, "exploding")
    assert exploding["status"] == "failed" and exploding["reason"] == "non-finite kl at epoch 1, step 3"
    assert "no such layer" in metrics_of(tmp_path, "raising")["reason"]
    board = pd.read_csv(tmp_path / "leaderboard.csv").set_index("run")
    assert board.loc["gaussian", "status"] == "ok" and math.isfinite(board.loc["gaussian", "is_nll"])
    assert board.loc["exploding", "status"] == "failed 1/1"
    assert "epoch 1, step 3" in board.loc["exploding", "failure"]


def test_a_metric_that_fails_costs_only_its_own_columns(tmp_path):
    result = run_tiny(tmp_path, ["careless"], epochs=1, plugins=failing_plugins(), metrics=["elbo", "is_nll", "nmi"], is_precision="bfloat16")
    assert result.failures == [] and list(result.metric_errors) == ["is_nll"]
    m = metrics_of(tmp_path, "careless")
    assert m["status"] == "ok" and "use --is-precision float32" in m["metric_errors"]["is_nll"]
    assert math.isfinite(m["neg_elbo"]) and math.isfinite(m["nmi"])  # the metrics before and after it completed
    assert m["is_nll"] is None and "metric 'is_nll' failed" in m["is_nll_na"]
    assert (tmp_path / "runs/careless/seed-0/model.safetensors").exists()
    board = pd.read_csv(tmp_path / "leaderboard.csv").set_index("run")
    assert math.isnan(board.loc["careless", "is_nll"]) and "is_nll" in board.loc["careless", "metric_errors"]


def test_epoch_log_keeps_host_values_on_the_host_and_finds_the_first_bad_step():
    log = EpochLog(steps=3, device=torch.device("cpu"))
    for step in range(3):
        weight = float("nan") if step == 2 else 0.5 * step  # a schedule's weight: a Python float
        log.add(step, {"loss": torch.tensor(10.0 + step), "kl_weight": weight, "kl": torch.tensor(1.0 * step)})
    assert log.on_device == ["loss", "kl"]  # the float never goes to the device
    names, table = log.read()
    assert names == ["loss", "kl_weight", "kl"] and table.dtype == torch.float64
    assert table[:2].tolist() == [[10.0, 0.0, 0.0], [11.0, 0.5, 1.0]]
    assert math.isnan(table[2, 1]) and table[2, 2] == 2.0
    with pytest.raises(TrainingFailure, match="log the same terms every step"):
        log.add(1, {"loss": torch.tensor(1.0)})


def test_cli_exits_1_after_failures(tmp_path, monkeypatch, capsys):
    import vaebench.plugin_manager

    monkeypatch.setattr(vaebench.plugin_manager, "load_plugins", lambda **kwargs: failing_plugins())
    code = main(["run", "exploding", "gaussian", "--epochs", "2", "--hidden", "16", "--is-samples", "5", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "run exploding seed 0 failed: non-finite kl at epoch 1, step 3" in err
    assert (tmp_path / "leaderboard.csv").exists()


def _cli(out, *extra):
    return [sys.executable, "-m", "vaebench", "run", "gaussian", "bernoulli-sfe", "--epochs", "60", "--hidden", "64",
            "--is-samples", "10", "--metrics", "elbo,is_nll,nmi", "--device", "cpu", "--out", str(out), *extra]


def test_sigkill_then_resume_equals_an_uninterrupted_sweep(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(_cli(tmp_path / "straight"), check=True, capture_output=True, env=env)

    killed = tmp_path / "killed"
    process = subprocess.Popen(_cli(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    checkpoint = killed / "runs" / "bernoulli-sfe" / "seed-0" / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    time.sleep(0.2)  # a few epochs into the second run
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (killed / "runs/gaussian/seed-0/metrics.json").exists()
    assert not (killed / "runs/bernoulli-sfe/seed-0/metrics.json").exists(), "the kill came too late to test anything"
    finished_before = (killed / "runs/gaussian/seed-0/metrics.json").stat().st_mtime_ns
    epochs_done = torch.load(checkpoint, weights_only=True)["epoch"] + 1
    assert 0 < epochs_done < 60

    subprocess.run(_cli(killed, "--resume"), check=True, capture_output=True, env=env)
    assert (killed / "runs/gaussian/seed-0/metrics.json").stat().st_mtime_ns == finished_before  # not trained again
    for variant in ("gaussian", "bernoulli-sfe"):
        a, b = metrics_of(tmp_path / "straight", variant), metrics_of(killed, variant)
        for key in ("neg_elbo", "neg_elbo_kl", "is_nll", "nmi"):
            assert a[key] == b[key], (variant, key)
    resumed = metrics_of(killed, "bernoulli-sfe")
    assert resumed["resumed_from_epoch"] == epochs_done
    straight = pd.read_csv(tmp_path / "straight/runs/bernoulli-sfe/seed-0/history.csv")
    again = pd.read_csv(killed / "runs/bernoulli-sfe/seed-0/history.csv")
    pd.testing.assert_series_equal(straight["loss"], again["loss"])
    pd.testing.assert_series_equal(straight["baseline"], again["baseline"])
    assert json.loads((killed / "runs/bernoulli-sfe/seed-0/config.json").read_text())["variant"] == "bernoulli-sfe"


def test_checkpoints_load_with_weights_only(tmp_path):
    run_tiny(tmp_path, ["ae-gmm"], epochs=1, metrics=["elbo"])
    state = torch.load(tmp_path / "runs/ae-gmm/seed-0/checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "objective", "rng", "generator", "history"} <= set(state)
    from safetensors.torch import load_file

    model = load_file(tmp_path / "runs/ae-gmm/seed-0/model.safetensors")
    assert "prior.means" in model  # the fitted GMM travels with the weights


class ScriptedValidation:
    """Validation scores given in advance; remembers the weights it saw each epoch."""

    name = "val_scripted"

    def __init__(self, scores):
        self.scores, self.snapshots = iter(scores), []

    def __call__(self, model, data):
        self.snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(self.scores)


def _gaussian_recipe(digits, epochs, validation):
    from vaebench.settings import RunSettings
    from vaebench.variant import BuildContext

    variant = load_plugins().registry.get("variant", "gaussian")
    recipe = variant.build(BuildContext(RunSettings(hidden=(16,), latent_dim=2), digits.dim, 10, len(digits.train), epochs))
    recipe.validation = validation
    return recipe


def _train(recipe, digits, tmp_path, epochs, **kwargs):
    from vaebench.execution.training import train

    return train(recipe, digits, budget=epochs, batch_size=128, lr=1e-3, optimizer="adam", seed=0,
                 device=torch.device("cpu"), run_dir=tmp_path, **kwargs)


def test_early_stopping_on_validation_keeps_the_best_model(tmp_path, digits):
    validation = ScriptedValidation([10.0, 9.0, 9.5, 9.6, 9.7, 9.8, 9.9])
    recipe = _gaussian_recipe(digits, 7, validation)
    result = _train(recipe, digits, tmp_path, 7, patience=2)
    assert result.epochs_run == 4 and result.best_epoch == 1 and result.stopped_early and result.selected_epoch == 1
    for key, value in recipe.model.state_dict().items():
        torch.testing.assert_close(value, validation.snapshots[1][key])  # the epoch-1 weights were restored


def test_the_best_validation_epoch_is_evaluated_without_early_stopping(tmp_path, digits):
    validation = ScriptedValidation([10.0, 8.0, 9.0, 9.5])
    recipe = _gaussian_recipe(digits, 4, validation)
    result = _train(recipe, digits, tmp_path / "best", 4)
    assert result.epochs_run == 4 and not result.stopped_early and result.selected_epoch == 1
    history = [h["val_scripted"] for h in result.history]
    assert history == [10.0, 8.0, 9.0, 9.5]
    for key, value in recipe.model.state_dict().items():
        torch.testing.assert_close(value, validation.snapshots[1][key])

    last = _gaussian_recipe(digits, 4, ScriptedValidation([10.0, 8.0, 9.0, 9.5]))
    assert _train(last, digits, tmp_path / "last", 4, select_epoch="last").selected_epoch == 3
    assert not torch.equal(last.model.decoder[0].weight, recipe.model.decoder[0].weight)


def test_a_run_records_how_its_epoch_was_selected(tmp_path):
    run_tiny(tmp_path, ["gaussian", "latent-opt", "ae-gmm"], epochs=3, metrics=["elbo"])
    gaussian, latent_opt, ae_gmm = (metrics_of(tmp_path, v) for v in ("gaussian", "latent-opt", "ae-gmm"))
    assert gaussian["selection"] == "best val_neg_elbo" and 0 <= gaussian["selected_epoch"] <= 2
    history = pd.read_csv(tmp_path / "runs/gaussian/seed-0/history.csv")
    assert gaussian["selected_epoch"] == int(history["val_neg_elbo"].idxmin())
    assert latent_opt["selection"].startswith("last epoch (") and latent_opt["selected_epoch"] == 2
    assert ae_gmm["selection"] == "best val_reconstruction"
    assert "val_reconstruction" in pd.read_csv(tmp_path / "runs/ae-gmm/seed-0/history.csv")


def test_early_stopping_is_off_by_default_and_recorded_when_on(tmp_path):
    run_tiny(tmp_path / "off", ["gaussian"], epochs=2, metrics=["throughput"])
    run_tiny(tmp_path / "on", ["gaussian"], epochs=2, metrics=["throughput"], patience=5)
    off = json.loads((tmp_path / "off/runs/gaussian/seed-0/config.json").read_text())
    on = json.loads((tmp_path / "on/runs/gaussian/seed-0/config.json").read_text())
    assert off["settings"]["patience"] is None and on["settings"]["patience"] == 5


def test_rich_progress_prints_each_runs_status():
    """rich reads a bare "[ok]" as markup and prints nothing; the status must still show."""
    import io

    from rich.console import Console

    from vaebench.reporting.progress import RichReporter

    console = Console(file=io.StringIO(), width=140)
    with RichReporter(console) as reporter:
        for run, status in (("gaussian seed 0", "ok"), ("exploding seed 0", "failed")):
            reporter.start(run, 2)
            reporter.epoch(run, {"epoch": 1, "loss": 1.5})
            reporter.stage(run, "evaluating is_nll")
            reporter.finish(run, status)
    text = console.file.getvalue()
    assert "gaussian seed 0 [ok]" in text and "exploding seed 0 [failed]" in text


def test_resumed_run_eta_times_only_this_process_epochs(monkeypatch):
    """A run resumed at epoch 1000 of 2000 replays its history instantly; its ETA comes from the
    epochs trained since, not from 1000 epochs that seem to have taken no time."""
    import io

    from vaebench.reporting import progress

    clock = iter([0.0, 0.0, 10.0, 20.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    stream = io.StringIO()
    reporter = progress.PlainReporter(stream, interval=0.0)
    reporter.start("run", 2000)
    reporter.epoch("run", {"epoch": 999, "loss": 1.0, "resumed": True})
    reporter.epoch("run", {"epoch": 1000, "loss": 1.0})  # 10 s after the replay: 10 s an epoch, 999 to go
    reporter.epoch("run", {"epoch": 1001, "loss": 1.0})  # 20 s for 2 epochs, 998 to go
    lines = stream.getvalue().splitlines()
    assert lines[-2].endswith("ETA 9990 s"), lines
    assert lines[-1].endswith("ETA 9980 s"), lines
