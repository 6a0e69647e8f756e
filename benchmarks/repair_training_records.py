"""Restore the training measurements of committed run records from what the run folders already hold.

Before vaebench 0.1's re-evaluation fix, ``vaebench evaluate`` rebuilt a run's training
figures from fields its record lacked: ``train img/s`` became 0, ``steps_run`` and
``images_seen`` stayed missing, ``peak_memory_mb`` became the evaluating process's, and
``wall_seconds`` stayed the training process's while ``eval_seconds`` grew. Nothing is
retrained: the values come from

* the run's own record, the first line of ``metrics_history.jsonl`` without
  ``evaluated_with`` (or ``metrics.json`` itself when the run was never re-evaluated):
  throughput, peak memory, and its wall time minus its own evaluation time, which is
  training's wall time (``train_wall_seconds``) unless the run was resumed, in which case
  the earlier processes' wall time was never recorded and the column is n/a;
* ``history.csv``: each epoch's images (its rate × its seconds), hence ``images_seen`` and
  ``steps_run`` (ceil(images / batch size) per epoch).

``wall_seconds`` becomes ``train_wall_seconds + eval_seconds``, as vaebench now writes it.
Columns no metric declares any more leave the record, values and declaration: ``mutual_info``
(I(x;z) over 2,000 images, pinned at its ceiling log 2000 in every row) and its ``N``.
The leaderboards are rebuilt afterwards (``vaebench leaderboard OUT``).

    python benchmarks/repair_training_records.py results/mnist-standard results/digits-quick [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from vaebench.atomic import write_json
from vaebench.execution.runner import RUN_COLUMNS, merge_columns, run_wall_seconds

RETIRED = ("mutual_info", "mutual_info_images")  # latent_usage no longer declares them


def own_record(folder: Path, record: dict) -> dict:
    """The record the run itself wrote, before any ``vaebench evaluate``."""
    history = folder / "metrics_history.jsonl"
    if history.exists():
        for line in history.read_text().splitlines():
            earlier = json.loads(line)
            if not earlier.get("evaluated_with"):
                return earlier
    return record


def repaired(folder: Path) -> tuple[dict, dict]:
    """(the repaired record, the changes: name -> (before, after))."""
    record = json.loads((folder / "metrics.json").read_text())
    run = own_record(folder, record)
    epochs = pd.read_csv(folder / "history.csv")
    images = (epochs["train_images_per_s"] * epochs["train_seconds"]).round().astype(int)
    batch = int(record["batch_size"])
    fixed = {
        "images_seen": int(images.sum()),
        "steps_run": int(sum(math.ceil(n / batch) for n in images)),
        "train_images_per_s": float(images.sum() / epochs["train_seconds"].sum()),
        "peak_memory_mb": run.get("peak_memory_mb"),
        "peak_memory_method": run.get("peak_memory_method"),
    }
    if run.get("train_images_per_s"):  # the run's own figure, where it survived
        fixed["train_images_per_s"] = float(run["train_images_per_s"])
    after_evaluation = ", taken after the run's own evaluation"
    if (run.get("eval_seconds") or 0) > 1.0 and fixed["peak_memory_method"] and after_evaluation not in fixed["peak_memory_method"]:
        fixed["peak_memory_method"] += after_evaluation
    resumed = int(run.get("resumed_from_epoch") or 0)
    if resumed == 0 and run.get("wall_seconds") is not None:
        fixed["train_wall_seconds"] = float(run["wall_seconds"]) - float(run.get("eval_seconds") or 0.0)
        fixed["train_wall_seconds_na"] = None
    else:
        fixed["train_wall_seconds"] = None
        fixed["train_wall_seconds_na"] = f"resumed at epoch {resumed}; the earlier processes' wall time was not recorded"
    after = {k: v for k, v in {**record, **fixed}.items() if k not in RETIRED and k.removesuffix("_na") not in RETIRED}
    after.update(run_wall_seconds(after))
    kept = [c for c in record.get("columns") or [] if c.get("name") not in RETIRED]
    after["columns"] = merge_columns([c.as_dict() for c in RUN_COLUMNS], kept)
    changes = {k: (record.get(k), after.get(k)) for k in (*fixed, *RETIRED, "wall_seconds") if record.get(k) != after.get(k)}
    return after, changes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="+", type=Path, help="results folders (each with runs/<run>/seed-<n>/)")
    parser.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    args = parser.parse_args(argv)
    for out in args.out:
        for folder in sorted(p for p in out.glob("runs/*/seed-*") if (p / "metrics.json").exists() and (p / "history.csv").exists()):
            after, changes = repaired(folder)
            shown = ", ".join(f"{k} {_short(a)} -> {_short(b)}" for k, (a, b) in changes.items())
            print(f"{folder}: {shown or 'unchanged'}")
            if changes and not args.dry_run:
                write_json(folder / "metrics.json", after)
    return 0


def _short(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
