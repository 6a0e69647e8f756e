"""Small suites for tests: narrow networks, few epochs, few importance samples."""

from __future__ import annotations

import json
from pathlib import Path

from vaebench.execution.runner import run_suite
from vaebench.plugin_manager import load_plugins
from vaebench.suite import make_suite

TINY = dict(dataset="digits", hidden=(32,), latent_dim=4, is_samples=20, device="cpu")


def run_tiny(out: Path, variants, epochs=3, plugins=None, **overrides):
    settings = {**TINY, "epochs": epochs, **overrides}
    if settings["epochs"] is None:
        del settings["epochs"]
    resume = settings.pop("resume", False)
    extend = settings.pop("extend", False)
    reporter = settings.pop("reporter", None)
    seeds = settings.pop("seeds", 1)
    suite = make_suite(list(variants), seeds, **settings)
    return run_suite(suite, plugins or load_plugins(), Path(out), resume=resume, reporter=reporter, extend=extend)


def metrics_of(out: Path, run: str, seed: int = 0) -> dict:
    return json.loads((Path(out) / "runs" / run / f"seed-{seed}" / "metrics.json").read_text())


def run_cli(capsys, *argv):
    """``vaebench ARGV`` in this process: (exit code, stdout, stderr)."""
    from vaebench.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    """Exit code 2, one line on stderr starting 'vaebench: error:', no traceback, every needle in it."""
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("vaebench: error:") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
