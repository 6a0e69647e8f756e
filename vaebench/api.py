"""The Python API, mirroring ``vaebench run``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vaebench.execution.runner import run_suite
from vaebench.plugin_manager import load_plugins
from vaebench.suite import make_suite


def run(
    variants: list[str] | str = "all",
    out: str | Path = "vaebench-out",
    *,
    seeds: int | list[int] = 1,
    resume: bool = False,
    jobs: int = 1,
    trackers: tuple[str, ...] = (),
    strict: bool = False,
    plugins: list[str] = (),
    prior: str | None = None,
    objective: str | None = None,
    options: dict | None = None,
    runs: dict[str, dict] | None = None,
    **settings,
) -> pd.DataFrame:
    """Train and evaluate a suite and return its leaderboard.

    ``variants`` is a list of names or ``"all"``; ``settings`` are the settings of
    ``vaebench run`` by their names (``dataset="mnist"``, ``epochs=100``, ``lr=1e-4``,
    ``hidden=(400,)``...), checked as the CLI checks them. ``runs`` takes ``[runs.NAME]``
    tables as a suite file does; ``plugins`` names plugin modules to load, as ``-p`` does;
    ``jobs`` trains that many runs at once in worker processes, as ``--jobs`` does; ``trackers``
    names trackers to log to, as ``--tracker`` does.
    """
    loaded = load_plugins(strict=strict, modules=plugins)
    names = loaded.registry.names("variant") if variants == "all" else ([variants] if isinstance(variants, str) else list(variants))
    suite = make_suite(names if names else None, seeds, runs=runs, prior=prior, objective=objective, options=options,
                       settings=settings, source="vaebench.run()")
    return run_suite(suite, loaded, Path(out), resume=resume, jobs=jobs, trackers=tuple(trackers)).board
