"""Run folders -> pandas -> leaderboard (rich table, Markdown, CSV, JSON).

Each run folder ``runs/<run>/seed-<n>/`` holds ``metrics.json``: one flat record with
the run's settings, status, metric values, and the columns its metrics declared
(name, direction, unit, description). The leaderboard is rebuilt from those files
alone, so it shows every declared column, whoever registered the metric: each
numeric column as the mean over the run's successful seeds with a ``_std`` column
(sample standard deviation, ddof = 1) beside it; each text column as the value all
seeds share, or "mixed (...)".
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd

from vaebench.atomic import write_atomic, write_text
from vaebench.errors import UsageError

log = logging.getLogger("vaebench.leaderboard")

METRICS_FILE = "metrics.json"
SORT_BY = ("is_nll", "neg_elbo")  # the rank column: the first of these the runs have
CONVERGENCE = {"is_nll": "is_nll_k_change"}  # how much an estimate still moved with more samples: gaps below it are ties
# the settings every caption states; a setting that differs between rows is listed as mixed
CAPTION_SETTINGS = ("dataset", "binarization", "budget_unit", "epochs", "steps", "seconds", "select_epoch", "is_samples", "is_precision")
# rows are ranked only against rows measured on the same test data with the same K: within each group of these
RANK_WITHIN = ("dataset", "binarization", "test_binarization_seed", "is_samples")
DESCRIPTIVE = ["variant", "prior", "objective", "dataset", "budget", "budget_unit", "epochs", "steps", "seconds", "batch_size", "lr",
               "latent_dim", "hidden", "binarization", "select_epoch", "device", "test_binarization_seed", "selection", "note"]


def run_records(out_dir: Path) -> pd.DataFrame:
    """One row per readable run folder under ``out_dir/runs``; unreadable ones are skipped with a warning."""
    rows = []
    for path in sorted(Path(out_dir).glob(f"runs/*/seed-*/{METRICS_FILE}")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            log.warning("skipping %s: not a JSON record (%s); rerun that run with --resume to rewrite it", path, type(exc).__name__)
            continue
        if not isinstance(record, dict):
            log.warning("skipping %s: it holds %s, not a run record; rerun that run with --resume to rewrite it", path, type(record).__name__)
            continue
        record.setdefault("run", record.get("variant") or path.parent.parent.name)
        record.setdefault("variant", record["run"])
        rows.append(record)
    return pd.DataFrame(rows)


def declared_columns(runs: pd.DataFrame) -> dict[str, dict]:
    """The columns the runs' metrics declared, first declaration first."""
    columns: dict[str, dict] = {}
    for declared in runs.get("columns", pd.Series(dtype=object)):
        items = declared.values() if isinstance(declared, dict) else declared if isinstance(declared, list) else ()
        for column in items:
            if isinstance(column, dict) and column.get("name"):
                columns.setdefault(column["name"], column)
    return columns


def _numeric(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce")


def leaderboard(runs: pd.DataFrame) -> pd.DataFrame:
    """Means and sample standard deviations over seeds, one row per run; ranked by IS-NLL."""
    if runs.empty:
        return pd.DataFrame(columns=["run", "variant", "dataset", "status", "seeds"])
    if "run" not in runs:
        runs = runs.assign(run=runs["variant"])
    columns = declared_columns(runs)
    rows = []
    for run, group in runs.groupby("run", sort=False):
        ok = group[group["status"] == "ok"]
        row: dict = {"run": run, "status": "ok", "seeds": len(ok), "seed_list": ",".join(str(s) for s in sorted(ok["seed"]))}
        failed = len(group) - len(ok)
        if failed:
            row["status"] = f"failed {failed}/{len(group)}"
            reasons = group.loc[group["status"] != "ok", "reason"].dropna().astype(str).unique()
            row["failure"] = "; ".join(reasons)
        for name, column in columns.items():
            values = ok[name] if name in ok else pd.Series(dtype=object)
            if column.get("text"):
                row[name] = _shared(values)
                continue
            numbers = _numeric(values)
            known = numbers.dropna()
            row[name] = known.mean() if len(known) else math.nan
            row[name + "_std"] = known.std(ddof=1) if len(known) > 1 else math.nan
            reasons = group.get(f"{name}_na", pd.Series(dtype=object)).dropna().astype(str).unique()
            if len(known) == 0 and len(reasons):
                row[f"{name}_na"] = reasons[0]
            elif 0 < len(known) < len(ok):  # a mean over fewer seeds than the row has: said in the row's notes
                missing = ok.loc[numbers.isna(), "seed"].tolist()
                row[f"{name}_partial"] = (f"over {len(known)} of {len(ok)} seeds (seed {','.join(str(s) for s in missing)} n/a"
                                          + (f": {reasons[0]})" if len(reasons) else ")"))
        for name in dict.fromkeys(DESCRIPTIVE + list(CAPTION_SETTINGS)):
            if name in group and name not in columns:
                row[name] = _shared(group[name])
        errors = {}
        for record_errors in group.get("metric_errors", pd.Series(dtype=object)).dropna():
            if isinstance(record_errors, dict):
                errors.update(record_errors)
        row["metric_errors"] = "; ".join(f"{k}: {v}" for k, v in errors.items()) if errors else math.nan
        row["columns"] = json.dumps(columns)
        rows.append(row)
    board = pd.DataFrame(rows)
    sort_by = next((c for c in SORT_BY if c in board and board[c].notna().any()), None)
    if sort_by is not None:
        # ranked within each group of rows measured on the same test data with the same K (RANK_WITHIN), groups in turn
        groups = [_group_key(row) for _, row in board.iterrows()]
        board = board.assign(_group=groups).sort_values(["_group", sort_by], na_position="last", kind="stable")
        ranks = pd.concat([pd.Series(_ranks(part.reset_index(drop=True), sort_by), index=part.index)
                           for _, part in board.groupby("_group", sort=False)])
        board = board.assign(rank=ranks).drop(columns="_group").reset_index(drop=True)
        board.insert(1, "rank", board.pop("rank"))
    front = ["run", "rank", "variant", "dataset", "status", "seeds"]
    numeric_order = []
    for name, column in columns.items():
        if name in board:
            numeric_order += [name] + ([name + "_std"] if name + "_std" in board else [])
    order = [c for c in front if c in board] + numeric_order
    return board[order + [c for c in board.columns if c not in order]]


def _distinct(board: pd.DataFrame, column: str) -> list[str]:
    """The different known values ``column`` has across rows (a missing field is not another value)."""
    if column not in board:
        return []
    return sorted({_plain(v) for v in board[column] if not _missing(v)})


def _group_key(row: pd.Series) -> tuple[str, ...]:
    return tuple("" if column not in row or _missing(row[column]) else _plain(row[column]) for column in RANK_WITHIN)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def comparable(board: pd.DataFrame) -> bool:
    """Whether every row was measured on the same test data with the same K: one ranking for all of them."""
    return all(len(_distinct(board, c)) <= 1 for c in RANK_WITHIN)


def group_columns(board: pd.DataFrame) -> list[str]:
    """The settings in ``RANK_WITHIN`` whose values differ between rows: a table shows them beside each row."""
    return [c for c in ("dataset", "binarization") if len(_distinct(board, c)) > 1]


def _ranks(board: pd.DataFrame, column: str) -> list[str]:
    """Competition ranks by ``column`` (lower is better), a row tied with the one above it when
    their mean ± std intervals overlap, or when their gap is smaller than either row's estimator
    change (``CONVERGENCE``: IS-NLL's fall from K/5 to K samples): differences smaller than the
    spread over seeds, or than what more samples would still move, are not rankings. Tied rows
    share the rank and are marked '='."""
    ranks, previous, tie_rank = [], None, 0
    for i, row in board.iterrows():
        value, spread = row[column], row.get(column + "_std", math.nan)
        spread = 0.0 if pd.isna(spread) else spread
        change = row.get(CONVERGENCE.get(column, ""), math.nan)
        change = 0.0 if pd.isna(change) else abs(change)
        if pd.isna(value):
            ranks.append("")
            continue
        if previous is not None and (value - spread <= previous[0] + previous[1] or value - previous[0] < max(change, previous[2])):
            ranks.append(f"{tie_rank}=")
            if not ranks[-2].endswith("="):
                ranks[-2] = ranks[-2] + "="
        else:
            tie_rank = i + 1
            ranks.append(str(tie_rank))
        previous = (value, spread, change)
    return ranks


def _plain(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ",".join(_plain(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _shared(values: pd.Series):
    """The value every seed has; several values are listed as mixed, not hidden."""
    known = [v for v in values if not _missing(v)]
    if not known:
        return math.nan
    texts = sorted({_plain(v) for v in known})
    if len(texts) == 1:
        return known[0] if not isinstance(known[0], (list, dict)) else texts[0]
    return f"mixed ({', '.join(texts)})"


def _fmt(value, std=None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, str):
        return value
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{value:,.{digits}f}" if digits == 0 else f"{value:.{digits}f}"
    return f"{value:.{digits}f} ± {std:.{digits}f}"


def _columns_of(board: pd.DataFrame) -> dict[str, dict]:
    if board.empty or "columns" not in board:
        return {}
    return json.loads(board["columns"].dropna().iloc[0]) if board["columns"].notna().any() else {}


def _mixed_k(board: pd.DataFrame) -> bool:
    return "is_samples" in board and board["is_samples"].dropna().nunique() > 1


def display_rows(board: pd.DataFrame, headline: bool = True) -> tuple[list[str], list[list[str]]]:
    """The headline table (or, with ``headline=False``, every other numeric column) as strings.

    Rows evaluated at different K get a K column in the headline table itself."""
    columns = _columns_of(board)
    shown = [(n, c) for n, c in columns.items() if not c.get("text") and bool(c.get("headline")) == headline and n in board]
    with_k = headline and _mixed_k(board) and any(n == "is_nll" for n, _ in shown)  # K beside IS-NLL
    groups = group_columns(board)  # rows ranked in groups: each row says which
    header = ["rank", "run", *groups, "status", "seeds"] + [c.get("label") or n for n, c in shown]
    if with_k:
        header.insert(4 + len(groups) + [n for n, _ in shown].index("is_nll") + 1, "K")
    if headline:
        header += ["params", "latent"]
    rows = []
    for _, r in board.iterrows():
        one = r["seeds"] <= 1  # no spread to show for a single seed
        cells = [str(r.get("rank", "")), str(r["run"]), *(_cell(r.get(g)) for g in groups), str(r["status"]), str(r["seeds"])]
        for name, column in shown:
            digits = int(column.get("digits", 2))
            std = None if one or digits == 0 else r.get(name + "_std")
            cells.append(_fmt(r[name], std, digits))
            if with_k and name == "is_nll":
                cells.append(_cell(r.get("is_samples")))
        if headline:
            params = r.get("n_parameters")
            cells += ["n/a" if pd.isna(params) else f"{int(params):,}", str(r.get("latent") if isinstance(r.get("latent"), str) else "")]
        rows.append(cells)
    return header, rows


def _shared_caption(board: pd.DataFrame, column: str, default: str = "n/a", known_only: bool = False) -> str:
    """The value the rows share, or mixed (...). ``known_only``: rows whose records lack the field are left out
    (a missing field is not another value)."""
    values = board[column] if column in board else pd.Series([default] * len(board))
    missing = [_missing(v) for v in values]
    texts = sorted({_plain(v) if not gone else default for v, gone in zip(values, missing) if not (known_only and gone)})
    if not texts:
        return default
    return texts[0] if len(texts) == 1 else f"mixed ({', '.join(texts)})"


def _seeds_phrase(board: pd.DataFrame) -> str:
    seeds = _distinct(board, "seed_list")
    counts = set(board["seeds"]) if "seeds" in board else set()
    if counts == {1}:
        return f"one seed ({', '.join(seeds)}) per row, so no spread is shown"
    if len(seeds) > 1:
        return "mean ± sample std (ddof = 1) over each row's seeds (the seeds column counts them; a row of one seed shows no spread)"
    return f"mean ± sample std (ddof = 1) over seeds {seeds[0] if seeds else 'n/a'}"


def _data_phrase(board: pd.DataFrame) -> str:
    test_seed = _shared_caption(board, "test_binarization_seed", known_only=True)
    held_out = f" (held-out splits binarised once with seed {test_seed})" if test_seed not in ("n/a", "None") and "mixed" not in test_seed else ""
    phrase = f"Dataset {_shared_caption(board, 'dataset')}, binarization {_shared_caption(board, 'binarization')}{held_out}."
    if not comparable(board):
        phrase += (" The rows were not all measured on the same test data with the same K: each is ranked only against those "
                   "that were (same dataset, binarization, held-out binarisation seed and K), group by group.")
    return phrase


def _budget_phrase(board: pd.DataFrame) -> str:
    unit = _shared_caption(board, "budget_unit", "epochs")
    budget_value = _shared_caption(board, unit if unit in ("epochs", "steps", "seconds") else "epochs")
    selection = _shared_caption(board, "select_epoch")
    if "mixed" in unit or "mixed" in budget_value or "mixed" in selection:
        return ("Budgets and the evaluated epoch differ between rows: each row's setting states its own, "
                "and the rows whose selection is not the best validation epoch say so below.")
    chosen = "best validation epoch" if selection == "best-val" else f"{selection} epoch"
    return f"Budget {budget_value} {unit} per run, the {chosen} evaluated (rows whose selection differs say so below)."


def _rank_phrase(board: pd.DataFrame) -> str:
    if "is_nll_k_change" in board and board["is_nll_k_change"].notna().any():
        return ("Rank by IS-NLL; '=' marks rows tied with the next: their mean ± std over seeds overlap, or their gap is smaller "
                "than either row's IS-NLL change from K/5 to K samples (K/5 - K), which the estimate might still move with more "
                "samples. Tied rows are not ranked against each other.")
    by = "IS-NLL" if "is_nll" in board and board["is_nll"].notna().any() else "-ELBO"  # SORT_BY's first column the rows have
    return f"Rank by {by}; '=' marks rows whose mean ± std overlaps the next row's: differences smaller than the spread over seeds are not rankings."


def caption(board: pd.DataFrame) -> str:
    """The table note: the settings the rows share (or that they differ), seeds, and how to read ranks."""
    precision = _shared_caption(board, "is_precision", "float32")
    parts = [
        _data_phrase(board),
        _budget_phrase(board),
        f"IS-NLL with K = {_shared_caption(board, 'is_samples')}{'' if precision == 'float32' else f' (decoder in {precision})'} on the test split"
        + (" (the K column gives each row's)." if _mixed_k(board) else "."),
        f"Nats per image; {_seeds_phrase(board)}.",
    ]
    parts.append(_rank_phrase(board))
    return " ".join(parts)


def notes(board: pd.DataFrame) -> list[str]:
    """One line per row that needs one: its note, its selection, n/a reasons, failures, metric errors.

    A column that is n/a for the same reason in every row gets one line for all of them."""
    lines = []
    shared_na = set()
    for column in [c for c in board.columns if c.endswith("_na")]:
        reasons = board[column].dropna().unique()
        if len(board) > 1 and board[column].notna().all() and len(reasons) == 1:
            shared_na.add(column)
    by_reason: dict[str, list[str]] = {}
    for column in sorted(shared_na):
        by_reason.setdefault(board[column].iloc[0], []).append(column[:-3])
    for reason, columns in by_reason.items():
        lines.append(f"- every row: {', '.join(columns)} n/a: {reason}")
    for _, r in board.iterrows():
        items = []
        if isinstance(r.get("note"), str) and r["note"]:
            items.append(r["note"])
        selection = r.get("selection")
        if isinstance(selection, str) and not selection.startswith("best "):
            items.append(f"evaluated: {selection}")
        for column in [c for c in board.columns if c.endswith("_na") and c not in shared_na]:
            if isinstance(r[column], str):
                items.append(f"{column[:-3]} n/a: {r[column]}")
        for column in [c for c in board.columns if c.endswith("_partial")]:
            if isinstance(r[column], str):
                items.append(f"{column[:-len('_partial')]} {r[column]}")
        if isinstance(r.get("failure"), str):
            items.append(f"failed: {r['failure']}")
        if isinstance(r.get("metric_errors"), str):
            items.append(f"metric errors: {r['metric_errors']}")
        if items:
            lines.append(f"- {r['run']}: " + "; ".join(items))
    return lines


def legend(board: pd.DataFrame) -> list[str]:
    """Every column's meaning, direction and unit."""
    lines = ["| column | better | unit | meaning |", "|---|---|---|---|"]
    for name, c in _columns_of(board).items():
        if name not in board:
            continue
        better = {"lower": "lower", "higher": "higher"}.get(c.get("direction"), "")
        lines.append(f"| {_cell(c.get('label') or name)} (`{name}`) | {better} | {c.get('unit', '')} | {_cell(c.get('description', ''))} |")
    return lines


def _cell(value) -> str:
    """A Markdown table cell: numbers plain, missing values n/a, pipes escaped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return _plain(value).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]


def to_markdown(board: pd.DataFrame, title: str = "") -> str:
    lines = [f"# {title}", ""] if title else []
    header, rows = display_rows(board)
    lines += _table(header, rows)
    if not board.empty:
        lines += ["", caption(board)]
        extra_header, extra_rows = display_rows(board, headline=False)
        if len(extra_header) > 4:
            lines += ["", "## Every column", ""] + _table(extra_header, extra_rows)
        text_columns = [n for n, c in _columns_of(board).items() if c.get("text") and n in board]
        if text_columns:
            lines += ["", "| run | " + " | ".join(text_columns) + " |", "|" + "---|" * (len(text_columns) + 1)]
            for _, r in board.iterrows():
                lines.append(f"| {r['run']} | " + " | ".join(_cell(r[n]) for n in text_columns) + " |")
        row_notes = notes(board)
        if row_notes:
            lines += ["", "## Notes", "", *row_notes]
        lines += ["", "## Columns", "", *legend(board)]
    return "\n".join(lines) + "\n"


def write_leaderboard(out_dir: Path, board: pd.DataFrame) -> list[Path]:
    out_dir = Path(out_dir)
    return [
        write_atomic(out_dir / "leaderboard.csv", lambda tmp: board.to_csv(tmp, index=False)),
        write_text(out_dir / "leaderboard.md", to_markdown(board, "vaebench leaderboard")),
        write_text(out_dir / "leaderboard.json", board_json(board)),
    ]


def board_json(board: pd.DataFrame) -> str:
    """The leaderboard as JSON: ``rows`` (every column) and ``columns`` (their declarations)."""
    rows = json.loads(board.drop(columns=["columns"], errors="ignore").to_json(orient="records"))
    return json.dumps({"columns": _columns_of(board), "caption": caption(board) if not board.empty else "", "rows": rows}, indent=2) + "\n"


def rich_table(board: pd.DataFrame, title: str = "leaderboard"):
    from rich.markup import escape
    from rich.table import Table

    header, rows = display_rows(board)
    table = Table(title=escape(title))
    for column in header:
        table.add_column(escape(column), no_wrap=column == "run", justify="left" if column in ("run", "status", "latent", "rank") else "right")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def rebuild(out_dir: Path) -> pd.DataFrame:
    """The leaderboard of ``out_dir`` from its run folders; a usage error when it has none."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise UsageError(f"{out_dir} is not a folder; pass the --out folder of a vaebench run")
    runs = run_records(out_dir)
    if runs.empty:
        raise UsageError(f"{out_dir} has no runs (no runs/<run>/seed-<n>/{METRICS_FILE}); pass the --out folder of a vaebench run")
    return leaderboard(runs)
