"""The files of a run folder and of an --out folder, and how to read them back.

``<out>/suite.json`` names the suite that writes there; ``<out>/runs/<run>/seed-<n>/``
holds ``config.json`` (what the run is), ``metrics.json`` (what it measured),
``history.csv`` (per epoch), ``metrics_history.jsonl`` (records it superseded),
``checkpoint.pt`` and ``model.safetensors``. Records written before the settings
schema (flat keys, no ``settings`` table) are read too. ``<out>/.vaebench-output`` marks a
folder vaebench writes into: ``vaebench run`` writes nowhere else but an empty or new folder
(a folder with run records from before the marker counts as vaebench's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vaebench.errors import UsageError
from vaebench.settings import FIELDS

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
SUITE_FILE = "suite.json"
LEGACY_NAMES = {"early_stopping_patience": "patience"}
MARKER_FILE = ".vaebench-output"
HOUSEKEEPING = {".vaebench.lock", ".vaebench.pid"}  # what the --out lock leaves, never another tool's


def check_is_ours(out: Path) -> None:
    """Refuse an --out folder that holds files vaebench did not write (another tool's leaderboard,
    say): it would be overwritten. Empty, new, marked, or holding run records: vaebench's."""
    out = Path(out)
    if not out.is_dir():
        return
    entries = sorted(p.name for p in out.iterdir() if p.name not in HOUSEKEEPING)
    if not entries or MARKER_FILE in entries:
        return
    if next(out.glob(f"runs/*/seed-*/{CONFIG_FILE}"), None) or next(out.glob(f"runs/*/seed-*/{METRICS_FILE}"), None):
        return  # a vaebench folder written before the marker
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    raise UsageError(f"--out {out} holds files vaebench did not write ({shown}); give an empty or new folder "
                     f"(vaebench would overwrite them)")


def mark_as_ours(out: Path, version: str) -> None:
    marker = Path(out) / MARKER_FILE
    if not marker.exists():
        marker.write_text(json.dumps({"written_by": "vaebench", "version": version}) + "\n")


def run_dir_of(out: Path, run: str, seed: int) -> Path:
    return Path(out) / "runs" / run / f"seed-{seed}"


def read_csv_exact(path: Path):
    """A CSV as a pandas DataFrame, each float read back exactly as it was written.

    Before pandas 3.1 that takes the round-trip parser (the default one can be 1 ulp off);
    from 3.1 the default parser is exact and the option deprecated."""
    import pandas as pd

    version = tuple(int(part) for part in pd.__version__.split(".")[:2] if part.isdigit())
    return pd.read_csv(path) if version >= (3, 1) else pd.read_csv(path, float_precision="round_trip")


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or ``None`` when it is missing, empty or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def recorded_settings(config: dict) -> dict | None:
    """The RunSettings values a run record was made with (old flat records included)."""
    if isinstance(config.get("settings"), dict):
        return {k: v for k, v in config["settings"].items() if k in FIELDS}
    flat = {LEGACY_NAMES.get(k, k): v for k, v in config.items()}
    values = {k: v for k, v in flat.items() if k in FIELDS and k not in ("device", "data_dir")}
    if "hidden" in values and isinstance(values["hidden"], list):
        values["hidden"] = tuple(values["hidden"])
    return values or None


def differences(recorded: dict, requested: dict, prefix: str = "") -> str:
    """``key: old -> new`` for every value that differs (nested tables by dotted keys), or ''."""
    parts = []
    for key in sorted(set(recorded) | set(requested)):
        old, new = recorded.get(key), requested.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            inner = differences(old, new, f"{prefix}{key}.")
            if inner:
                parts.append(inner)
        elif _normal(old) != _normal(new):
            parts.append(f"{prefix}{key} {_shown(old)} -> {_shown(new)}")
    return "; ".join(parts)


def _normal(value):
    return list(value) if isinstance(value, tuple) else value


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return "unset" if value is None else str(value)
