"""The Python API, mirroring ``vaebench run``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vaebench.plugin_manager import load_plugins
from vaebench.runner import run_suite
from vaebench.suite import make_suite


def run(variants: list[str] | str = "all", out: str | Path = "vaebench-out", resume: bool = False, strict: bool = False, **suite) -> pd.DataFrame:
    """Train and evaluate a suite and return its leaderboard.

    ``variants`` is a list of names or ``"all"``; the other keywords are those of
    :func:`vaebench.suite.make_suite` (dataset, budget, epochs, seeds, device, ...).
    """
    plugins = load_plugins(strict=strict)
    names = plugins.registry.names("variant") if variants == "all" else list(variants)
    return run_suite(make_suite(names, **suite), plugins, Path(out), resume=resume).board
