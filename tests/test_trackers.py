"""--tracker mlflow / tensorboard: runs logged where researchers look, read back through each library."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from helpers import TINY, metrics_of, run_tiny
from vaebench import hookimpl
from vaebench.cli import main
from vaebench.errors import UsageError
from vaebench.execution.runner import callbacks_of, run_suite
from vaebench.plugin_manager import load_plugins
from vaebench.suite import make_suite

RUN = ["run", "gaussian", "--dataset", "digits", "--hidden", "16", "--latent-dim", "3", "--epochs", "2",
       "--is-samples", "10", "--metrics", "elbo,is_nll,pictures", "--device", "cpu", "-q"]


def test_mlflow_receives_settings_epochs_final_metrics_and_pictures(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'vaebench[mlflow]')")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # MLflow puts a SQLite store's artifacts in ./mlruns
    assert main([*RUN, "--out", str(tmp_path / "out"), "--tracker", "mlflow"]) == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("vaebench")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "gaussian seed 0" and run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.001" and run.data.params["hidden"] == "[16]"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [0, 1]
    recorded = metrics_of(tmp_path / "out", "gaussian")
    assert run.data.metrics["final.neg_elbo"] == pytest.approx(recorded["neg_elbo"])
    assert run.data.metrics["final.is_nll"] == pytest.approx(recorded["is_nll"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"samples.png", "metrics.json", "config.json"} <= artifacts


def test_tensorboard_event_files_hold_epochs_final_metrics_and_pictures(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install 'vaebench[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main([*RUN, "--out", str(tmp_path), "--tracker", "tensorboard"]) == 0
    events = EventAccumulator(str(tmp_path / "tensorboard/gaussian/seed-0"), size_guidance={"images": 0}).Reload()
    assert [e.step for e in events.Scalars("epoch/loss")] == [0, 1]
    assert events.Scalars("final/neg_elbo")[0].value == pytest.approx(metrics_of(tmp_path, "gaussian")["neg_elbo"], rel=1e-6)
    assert "samples" in events.Tags()["images"]


def test_a_failing_tracker_costs_a_warning_never_the_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    monkeypatch.chdir(tmp_path)
    assert main([*RUN, "--out", str(tmp_path), "--tracker", "mlflow"]) == 0
    assert metrics_of(tmp_path, "gaussian")["status"] == "ok"
    assert "callback mlflow.on_run_start failed" in capsys.readouterr().err
    assert json.loads((tmp_path / "runs/gaussian/seed-0/metrics.json").read_text())["status"] == "ok"


def test_trackers_are_opt_in_and_checked_before_training(tmp_path, capsys):
    plugins = load_plugins()
    assert callbacks_of(plugins) == ()  # no tracker unless asked, and vaebench has no always-on callback
    assert main([*RUN, "--out", str(tmp_path), "--tracker", "wandb"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tracker wandb: no such tracker" in err and "mlflow, tensorboard" in err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(UsageError, match="needs the 'no_such_package_here' package, which is not installed: pip install"):
        callbacks_of(load_plugins(extra=[("needs", SimpleNamespace(register_trackers=_register_needs))]), ("needs",))


class _Needs:
    name, requires = "needs", ("no_such_package_here", "pip install no-such-package")

    def on_run_end(self, run, record):  # a tracker needs one of the callback methods to register
        pass


@hookimpl
def _register_needs(register):
    register(_Needs())


class _Epochs:
    """A plugin's tracker: the epochs it saw, run by run."""

    description = "records the epochs it sees"

    def __init__(self, name):
        self.name, self.seen = name, []

    def on_epoch_end(self, run, record):
        self.seen.append((run["run"], record["epoch"]))


def test_a_plugins_tracker_runs_only_when_named_and_a_plugins_callback_always(tmp_path, capsys):
    tracker, callback = _Epochs("epoch-log"), _Epochs("always")
    plugins = load_plugins(extra=[("tracks", SimpleNamespace(register_trackers=hookimpl(lambda register: register(tracker)))),
                                  ("calls", SimpleNamespace(register_callbacks=hookimpl(lambda register: register(callback))))])
    assert [c.name for c in callbacks_of(plugins)] == ["always"]
    assert [c.name for c in callbacks_of(plugins, ("epoch-log",))] == ["always", "epoch-log"]
    run_tiny(tmp_path / "plain", ["gaussian"], epochs=2, plugins=plugins, metrics=("elbo",))
    assert tracker.seen == [] and callback.seen == [("gaussian", 0), ("gaussian", 1)]
    suite = make_suite(["gaussian"], 1, epochs=2, metrics=("elbo",), **TINY)
    run_suite(suite, plugins, tmp_path / "tracked", trackers=("epoch-log",))
    assert tracker.seen == [("gaussian", 0), ("gaussian", 1)]
    config = json.loads((tmp_path / "tracked/runs/gaussian/seed-0/config.json").read_text())
    assert [(c["name"], c["kind"], c["plugin"]) for c in config["callbacks"]] == [("always", "callback", "calls"), ("epoch-log", "tracker", "tracks")]
