"""``vaebench report OUT``: one static ``OUT/report.html`` to look at a suite.

It holds the leaderboard with sortable columns (a few lines of inline JavaScript: click a
header), its caption, notes and column legend; the reproductions table when runs name a
published result; the combined figures; each run's pictures side by side (seed 0's, the
image files referenced beside the report, so the folder is the report); the suite's shared
settings; and the plugin, distribution and version of every component. No server, no CDN:
nothing is fetched from anywhere when the file is opened.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from vaebench.atomic import write_text
from vaebench.execution.records import CONFIG_FILE, SUITE_FILE, read_json
from vaebench.reporting.leaderboard import caption, display_rows, legend, notes, rebuild

REPORT_FILE = "report.html"
REPRODUCTION_COLUMNS = (("reference", "reference"), ("reference_value", "published"), ("is_nll_reference_k", "ours at its K"),
                        ("delta", "ours − published"), ("is_nll", "ours at K = --is-samples"), ("reproduction", "status"),
                        ("setting", "setting"))

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f0f0f0; cursor: pointer; user-select: none; }
td:nth-child(2), th:nth-child(2) { text-align: left; }
.pictures { display: flex; flex-wrap: wrap; gap: 1em; }
.pictures figure { margin: 0; }
.pictures img { max-width: 320px; border: 1px solid #ddd; }
code { background: #f6f6f6; }
"""

# Click a header to sort by it; numbers ("23.46 ± 0.14", "1,234") by their first number.
SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, column) {
    th.addEventListener('click', function () {
      var rows = Array.from(table.tBodies[0].rows);
      var ascending = th.dataset.order !== 'asc';
      var key = function (row) {
        var text = row.cells[column].textContent.replace(/,/g, '');
        var number = parseFloat(text);
        return isNaN(number) ? text : number;
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var order = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { table.tBodies[0].appendChild(row); });
      th.dataset.order = ascending ? 'asc' : 'desc';
    });
  });
});
"""


def _table(header: list[str], rows: list[list[str]], sortable: bool = True) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{"sortable" if sortable else ""}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _markdown_table(lines: list[str]) -> str:
    """A Markdown table (the legend) as HTML."""
    rows = [[cell.strip().replace("\\|", "|") for cell in line.strip("|").split(" | ")] for line in lines if not line.startswith("|---")]
    return _table(rows[0], rows[1:], sortable=False) if rows else ""


def _value(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def reproductions(board: pd.DataFrame) -> str:
    if "reference" not in board or board["reference"].isna().all():
        return ""
    rows = [[str(r["run"])] + [_value(r.get(key)) for key, _ in REPRODUCTION_COLUMNS] for _, r in board.iterrows()
            if isinstance(r.get("reference"), str)]
    return "<h2>Reproductions</h2>" + _table(["run"] + [label for _, label in REPRODUCTION_COLUMNS], rows)


def pictures(out: Path, board: pd.DataFrame) -> str:
    parts = []
    figures = sorted((out / "figures").glob("*.png"))
    if figures:
        parts.append("<h2>Figures</h2><div class='pictures'>" + "".join(_figure(out, p) for p in figures) + "</div>")
    for run in board["run"]:
        folder = out / "runs" / str(run) / "seed-0"
        images = sorted(folder.glob("*.png"))
        if images:
            parts.append(f"<h3>{html.escape(str(run))} (seed 0)</h3><div class='pictures'>"
                         + "".join(_figure(out, p) for p in images) + "</div>")
    return "".join(parts)


def _figure(out: Path, path: Path) -> str:
    relative = path.relative_to(out).as_posix()
    return f"<figure><img src='{html.escape(relative)}' alt='{html.escape(path.stem)}'><figcaption>{html.escape(path.stem)}</figcaption></figure>"


def settings(out: Path) -> str:
    suite = read_json(out / SUITE_FILE)
    if not isinstance(suite, dict):
        return ""
    shared = suite.get("settings") or {}
    rows = [[key, json.dumps(value) if not isinstance(value, str) else value] for key, value in sorted(shared.items())]
    source = html.escape(str(suite.get("source", "")))
    return f"<h2>Settings</h2><p>Suite: <code>{source}</code>; runs may override these in their own tables.</p>" + _table(["setting", "value"], rows, sortable=False)


def plugin_versions(out: Path, board: pd.DataFrame) -> str:
    seen: dict[tuple, list] = {}
    for run in board["run"]:
        config = read_json(out / "runs" / str(run) / "seed-0" / CONFIG_FILE)
        if not isinstance(config, dict):
            continue
        for role, component in (config.get("components") or {}).items():
            entries = component.values() if role == "metrics" and isinstance(component, dict) else [component]
            for c in entries:
                if isinstance(c, dict):
                    seen.setdefault((role if role != "metrics" else "metric", c.get("name"), c.get("plugin"), c.get("distribution"),
                                     c.get("version")), []).append(str(run))
    rows = [[kind, name, plugin, distribution or "", version or "", ", ".join(sorted(set(runs)))]
            for (kind, name, plugin, distribution, version), runs in sorted(seen.items(), key=lambda kv: tuple(map(str, kv[0])))]
    return "<h2>Components and plugins</h2>" + _table(["kind", "name", "plugin", "distribution", "version", "runs"], rows, sortable=False)


def render(out: Path) -> str:
    out = Path(out)
    board = rebuild(out)
    header, rows = display_rows(board)
    extra_header, extra_rows = display_rows(board, headline=False)
    row_notes = "".join(f"<li>{html.escape(line[2:])}</li>" for line in notes(board))
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>vaebench report: {html.escape(out.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>vaebench report: {html.escape(out.name)}</h1>",
        "<h2>Leaderboard</h2><p>Click a column header to sort.</p>",
        _table(header, rows),
        f"<p>{html.escape(caption(board))}</p>",
        "<h2>Every column</h2>" + _table(extra_header, extra_rows) if len(extra_header) > 4 else "",
        f"<h2>Notes</h2><ul>{row_notes}</ul>" if row_notes else "",
        reproductions(board),
        pictures(out, board),
        settings(out),
        plugin_versions(out, board),
        "<h2>Columns</h2>" + _markdown_table(legend(board)),
        f"<script>{SCRIPT}</script></body></html>",
    ]
    return "\n".join(p for p in parts if p)


def write_report(out: Path) -> Path:
    path = Path(out) / REPORT_FILE
    write_text(path, render(out))
    return path


def find_chromium() -> str | None:
    """A Chromium-family browser on PATH to open the report headless (tests, screenshots), or None."""
    import shutil

    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
