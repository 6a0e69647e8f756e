"""Run folders -> pandas -> leaderboard (rich table, Markdown, CSV, JSON) and the combined figure.

Each run folder ``runs/<variant>/seed-<n>/`` holds ``metrics.json``: one flat
record with the run's settings, status and metrics. The leaderboard is always
rebuilt from those files alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from vaebench.atomic import write_atomic, write_text
from vaebench.errors import UsageError

METRICS_FILE = "metrics.json"
# the headline columns, in order; each numeric one gets a <name>_std column beside it
HEADLINE = ["neg_elbo", "is_nll", "nmi", "train_images_per_s"]
EXTRA = [
    "neg_elbo_reconstruction",
    "neg_elbo_kl",
    "is_nll_given_y",
    "is_nll_train",
    "is_nll_train_minus_test",
    "train_seconds",
    "eval_seconds",
    "wall_seconds",
    "peak_memory_mb",
]
DESCRIPTIVE = [
    "latent",
    "n_parameters",
    "budget",
    "epochs",
    "is_samples",
    "is_precision",
    "binarization",
    "elbo_split",
    "nmi_method",
    "is_proposal",
    "device",
]


def run_records(out_dir: Path) -> pd.DataFrame:
    """One row per run folder under ``out_dir/runs``."""
    paths = sorted(Path(out_dir).glob(f"runs/*/seed-*/{METRICS_FILE}"))
    rows = []
    for path in paths:
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # written atomically, so only foreign files can be unreadable
    return pd.DataFrame(rows)


def leaderboard(runs: pd.DataFrame) -> pd.DataFrame:
    """Means and standard deviations over seeds, one row per (variant, dataset)."""
    if runs.empty:
        return pd.DataFrame(columns=["variant", "dataset", "status", "seeds", *HEADLINE])
    rows = []
    for (variant, dataset), group in runs.groupby(["variant", "dataset"], sort=False):
        ok = group[group["status"] == "ok"]
        row: dict = {"variant": variant, "dataset": dataset, "seeds": len(ok)}
        failed = len(group) - len(ok)
        row["status"] = "ok" if failed == 0 else f"failed {failed}/{len(group)}"
        if failed:
            reasons = group.loc[group["status"] != "ok", "reason"].dropna().astype(str).unique()
            row["failure"] = "; ".join(reasons)
        for column in HEADLINE + EXTRA:
            values = pd.to_numeric(ok[column], errors="coerce") if column in ok else pd.Series(dtype=float)
            row[column] = values.mean() if values.notna().any() else math.nan
            row[column + "_std"] = values.std(ddof=0) if values.notna().any() else math.nan
        for column in DESCRIPTIVE:
            if column in group:
                known = group[column].dropna()
                row[column] = known.iloc[0] if len(known) else None
        for column in [c for c in group.columns if c.endswith("_na")]:
            known = group[column].dropna()
            if len(known):
                row[column] = known.iloc[0]
        row["comparisons"] = next((c for c in group.get("comparisons", []) if isinstance(c, dict) and c), {})
        rows.append(row)
    board = pd.DataFrame(rows)
    by_variant = board.set_index("variant")
    all_notes = []
    for i, row in board.iterrows():
        notes = []
        for column, (other, metric) in (row["comparisons"] or {}).items():
            if other in by_variant.index:
                value = by_variant.loc[other, metric] - row[metric]
                board.loc[i, column] = value
                notes.append(f"{column.replace('_', ' ')} = {metric}({other}) − {metric}({row['variant']}) = {value:.2f}")
        all_notes.append("; ".join(notes) if notes else math.nan)
    board["notes"] = pd.Series(all_notes, index=board.index, dtype=object)
    board = board.drop(columns=["comparisons"])
    order = ["variant", "dataset", "status", "seeds"]
    for column in HEADLINE:
        order += [column, column + "_std"]
    rest = [c for c in board.columns if c not in order]
    return board[order + rest].sort_values("is_nll", na_position="last", kind="stable").reset_index(drop=True)


def _fmt(value, std=None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ± {std:.{digits}f}"


def display_rows(board: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The headline table as strings: mean ± std over seeds."""
    header = ["variant", "status", "seeds", "-ELBO", "IS-NLL", "NMI", "train img/s", "params", "latent"]
    rows = []
    for _, r in board.iterrows():
        one = r["seeds"] <= 1  # no spread to show for a single seed
        rows.append(
            [
                str(r["variant"]),
                str(r["status"]),
                str(r["seeds"]),
                _fmt(r["neg_elbo"], None if one else r["neg_elbo_std"]),
                _fmt(r["is_nll"], None if one else r["is_nll_std"]),
                _fmt(r["nmi"], None if one else r["nmi_std"], 3),
                _fmt(r["train_images_per_s"], None, 0),
                "n/a" if pd.isna(r.get("n_parameters")) else f"{int(r['n_parameters']):,}",
                str(r.get("latent") or ""),
            ]
        )
    return header, rows


def _plain(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _shared(board: pd.DataFrame, column: str, default: str = "n/a") -> str:
    """The value every row has in ``column``; several values are listed as mixed, not hidden."""
    known = board[column].fillna(default) if column in board else pd.Series([default] * len(board), dtype=object)
    values = sorted({_plain(v) for v in known})
    return values[0] if len(values) == 1 else f"mixed ({', '.join(values)})"


def to_markdown(board: pd.DataFrame, title: str = "") -> str:
    header, rows = display_rows(board)
    lines = [f"# {title}", ""] if title else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if not board.empty:
        # runs from before --is-precision existed decoded in float32
        precision = _shared(board, "is_precision", default="float32")
        lines += [
            "",
            f"Dataset {_shared(board, 'dataset')}, binarization {_shared(board, 'binarization')}, budget "
            f"{_shared(board, 'budget')} ({_shared(board, 'epochs')} epochs), IS-NLL with K = {_shared(board, 'is_samples')}"
            f"{'' if precision == 'float32' else f' (decoder in {precision})'} on the {_shared(board, 'elbo_split', 'test')} "
            "split; nats per image, mean ± std over seeds.",
        ]
        notes = [
            f"- {r['variant']}: {col[:-3]} n/a: {r[col]}"
            for _, r in board.iterrows()
            for col in board.columns
            if col.endswith("_na") and isinstance(r[col], str)
        ]
        notes += [f"- {r['variant']}: {r['notes']}" for _, r in board.iterrows() if isinstance(r.get("notes"), str)]
        if notes:
            lines += ["", *notes]
    return "\n".join(lines) + "\n"


def write_leaderboard(out_dir: Path, board: pd.DataFrame) -> list[Path]:
    out_dir = Path(out_dir)
    paths = [
        write_atomic(out_dir / "leaderboard.csv", lambda tmp: board.to_csv(tmp, index=False)),
        write_text(out_dir / "leaderboard.md", to_markdown(board, "vaebench leaderboard")),
    ]
    return paths


def rich_table(board: pd.DataFrame, title: str = "leaderboard"):
    from rich.table import Table

    header, rows = display_rows(board)
    table = Table(title=title)
    widest = max([len(row[0]) for row in rows] + [7])
    for column in header:
        if column == "variant":
            table.add_column(column, no_wrap=True, min_width=widest)
        else:
            table.add_column(column, justify="left" if column in ("status", "latent") else "right")
    for row in rows:
        table.add_row(*row)
    return table


def rebuild(out_dir: Path) -> pd.DataFrame:
    """The leaderboard of ``out_dir`` from its run folders; a usage error when it has none."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise UsageError(f"{out_dir} is not a folder; pass the --out folder of a vaebench run")
    runs = run_records(out_dir)
    if runs.empty:
        raise UsageError(f"{out_dir} has no runs (no runs/<variant>/seed-<n>/{METRICS_FILE}); pass the --out folder of a vaebench run")
    return leaderboard(runs)


def combined_figure(out_dir: Path, picture: str = "samples_probs.png") -> Path | None:
    """One figure with a grid per variant (seed 0's ``picture``), in ``figures/``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    grids = []
    for variant_dir in sorted((out_dir / "runs").glob("*")):
        seeds = sorted(variant_dir.glob(f"seed-*/{picture}"))
        if seeds:
            grids.append((variant_dir.name, seeds[0]))
    if not grids:
        return None
    cols = min(4, len(grids))
    rows = math.ceil(len(grids) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, path) in zip(axes.flat, grids):
        ax.imshow(mpimg.imread(path), cmap="gray")
        ax.set_title(name)
    fig.suptitle(f"samples ({picture[:-4]}) per variant")
    path = out_dir / "figures" / f"all_{picture}"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)
    return path
