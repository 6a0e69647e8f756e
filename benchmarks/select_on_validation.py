"""Which candidate a validation measurement picks: each run's history column at its evaluated epoch.

    python benchmarks/select_on_validation.py results/gumbel-capacity-selection --column nmi

For every run of OUT (one per candidate setting), the value of ``--column`` in each seed's
``history.csv`` (logged on the validation split every epoch) at the epoch the run evaluates
(``selected_epoch`` in its metrics.json), then its mean over seeds. Runs are grouped by their
dataset, and the best of each group (highest, or lowest with ``--lower``) is marked. Nothing
here reads a test value.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def validation_values(out: Path, column: str) -> pd.DataFrame:
    rows = []
    for record_file in sorted(out.glob("runs/*/seed-*/metrics.json")):
        record = json.loads(record_file.read_text())
        history = pd.read_csv(record_file.parent / "history.csv")
        epoch = int(record["selected_epoch"])
        rows.append({"dataset": record["dataset"], "run": record_file.parent.parent.name, "seed": record["seed"],
                     "epoch": epoch, column: float(history.loc[history["epoch"] == epoch, column].iloc[0])})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--column", required=True, help="a history.csv column measured on the validation split")
    parser.add_argument("--lower", action="store_true", help="lower is better")
    args = parser.parse_args()
    values = validation_values(args.out, args.column)
    for dataset, group in values.groupby("dataset"):
        means = group.groupby("run")[args.column].agg(["mean", "std", "count"])
        best = means["mean"].idxmin() if args.lower else means["mean"].idxmax()
        print(f"{dataset}: validation {args.column} at the evaluated epoch, mean over seeds")
        for run, row in means.sort_values("mean", ascending=args.lower).iterrows():
            spread = "" if row["count"] < 2 else f" ± {row['std']:.3f}"
            print(f"  {'*' if run == best else ' '} {run}: {row['mean']:.3f}{spread} ({int(row['count'])} seed(s))")


if __name__ == "__main__":
    main()
