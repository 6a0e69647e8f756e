"""Small suites for tests: narrow networks, few epochs, few importance samples."""

from __future__ import annotations

import json
from pathlib import Path

from vaebench.plugin_manager import load_plugins
from vaebench.runner import run_suite
from vaebench.suite import make_suite

TINY = dict(dataset="digits", hidden=[32], latent_dim=4, is_samples=20, device="cpu")


def run_tiny(out: Path, variants, epochs=3, plugins=None, **overrides):
    settings = {**TINY, "epochs": epochs, **overrides}
    resume = settings.pop("resume", False)
    reporter = settings.pop("reporter", None)
    return run_suite(make_suite(list(variants), **settings), plugins or load_plugins(), Path(out), resume=resume, reporter=reporter)


def metrics_of(out: Path, variant: str, seed: int = 0) -> dict:
    return json.loads((Path(out) / "runs" / variant / f"seed-{seed}" / "metrics.json").read_text())
