"""trackers: each run logged to MLflow or TensorBoard (``--tracker mlflow|tensorboard``).

Both are trackers registered through ``register_trackers``, exactly as a third-party
tracker would be: a run logs to a tracker only when ``--tracker NAME`` names it. The run folder stays the source of truth; a tracker
that fails (a server down, a locked database) costs a warning, never the run.

* ``mlflow`` (``pip install 'vaebench[mlflow]'``): one MLflow run per vaebench run x seed in
  the experiment ``vaebench`` (or ``$VAEBENCH_MLFLOW_EXPERIMENT``), with the settings as
  parameters, every epoch's numbers as metrics by step, the final metrics, and the pictures
  and records of the run folder as artifacts. The store is ``$MLFLOW_TRACKING_URI``, else
  MLflow's default (``./mlflow.db``, SQLite, since MLflow 3). Runs are addressed by id
  through ``MlflowClient``, so several runs, and ``--jobs`` workers, log side by side.
* ``tensorboard`` (``pip install 'vaebench[tensorboard]'``): event files in
  ``OUT/tensorboard/<run>/seed-<n>/``: every epoch's numbers as scalars, the final metrics
  under ``final/``, and the run's pictures as images. ``tensorboard --logdir OUT/tensorboard``.
"""

from __future__ import annotations

import numbers
import os
import time
from pathlib import Path

from vaebench import hookimpl

EXPERIMENT_ENV = "VAEBENCH_MLFLOW_EXPERIMENT"


def numeric(record: dict) -> dict[str, float]:
    """The finite-or-not numbers of a record (booleans and text left out)."""
    return {k: float(v) for k, v in record.items() if isinstance(v, numbers.Real) and not isinstance(v, bool)}


def flat_settings(settings: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(flat_settings(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = str(value)
    return out


def run_key(run: dict) -> tuple:
    return (run.get("run"), run.get("seed"), run.get("run_dir"))


class MLflowTracker:
    name = "mlflow"
    requires = ("mlflow", "pip install 'vaebench[mlflow]'")
    description = "logs settings, per-epoch and final metrics and pictures to MLflow ($MLFLOW_TRACKING_URI)"

    def __init__(self):
        self._runs: dict[tuple, str] = {}  # (run, seed, run_dir) -> MLflow run id
        self._client = None

    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient()
        return self._client

    def on_run_start(self, run: dict) -> None:
        client = self.client()
        name = os.environ.get(EXPERIMENT_ENV, "vaebench")
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
        tags = {"vaebench.run": str(run["run"]), "vaebench.seed": str(run["seed"]), "vaebench.variant": str(run.get("variant")),
                "vaebench.run_dir": str(run["run_dir"])}
        created = client.create_run(experiment_id, run_name=f"{run['run']} seed {run['seed']}", tags=tags)
        self._runs[run_key(run)] = created.info.run_id
        from mlflow.entities import Param

        params = [Param(k, v[:6000]) for k, v in flat_settings(run.get("settings", {})).items()]
        for start in range(0, len(params), 100):
            client.log_batch(created.info.run_id, params=params[start:start + 100])

    def on_epoch_end(self, run: dict, record: dict) -> None:
        run_id = self._runs.get(run_key(run))
        if run_id is None:
            return
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(record.get("epoch", 0))
        metrics = [Metric(k, v, now, step) for k, v in numeric(record).items() if k != "epoch"]
        self.client().log_batch(run_id, metrics=metrics)

    def on_run_end(self, run: dict, record: dict) -> None:
        run_id = self._runs.pop(run_key(run), None)
        if run_id is None:
            return
        from mlflow.entities import Metric

        client, now = self.client(), int(time.time() * 1000)
        metrics = [Metric(f"final.{k}", v, now, 0) for k, v in numeric(record).items()]
        for start in range(0, len(metrics), 500):
            client.log_batch(run_id, metrics=metrics[start:start + 500])
        folder = Path(run["run_dir"])
        for path in sorted(folder.glob("*.png")) + [folder / "metrics.json", folder / "config.json"]:
            if path.exists():
                client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, "FINISHED" if record.get("status") == "ok" else "FAILED")


class TensorBoardTracker:
    name = "tensorboard"
    requires = ("tensorboard", "pip install 'vaebench[tensorboard]'")
    description = "writes per-epoch and final metrics and pictures as TensorBoard event files under OUT/tensorboard/"

    def __init__(self):
        self._writers: dict[tuple, object] = {}

    @staticmethod
    def log_dir(run: dict) -> Path:
        folder = Path(run["run_dir"])  # OUT/runs/<run>/seed-<n>
        return folder.parents[2] / "tensorboard" / folder.parent.name / folder.name

    def on_run_start(self, run: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(self.log_dir(run)))
        writer.add_text("settings", "\n".join(f"    {k} = {v}" for k, v in flat_settings(run.get("settings", {})).items()))
        self._writers[run_key(run)] = writer

    def on_epoch_end(self, run: dict, record: dict) -> None:
        writer = self._writers.get(run_key(run))
        if writer is None:
            return
        step = int(record.get("epoch", 0))
        for key, value in numeric(record).items():
            if key != "epoch":
                writer.add_scalar(f"epoch/{key}", value, step)
        writer.flush()

    def on_run_end(self, run: dict, record: dict) -> None:
        writer = self._writers.pop(run_key(run), None)
        if writer is None:
            return
        import numpy as np
        from PIL import Image

        for key, value in numeric(record).items():
            writer.add_scalar(f"final/{key}", value, 0)
        for path in sorted(Path(run["run_dir"]).glob("*.png")):
            with Image.open(path) as image:
                writer.add_image(path.stem, np.asarray(image.convert("RGB")), 0, dataformats="HWC")
        writer.close()


@hookimpl
def register_trackers(register):
    register(MLflowTracker())
    register(TensorBoardTracker())
