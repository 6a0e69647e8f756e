"""A callback that writes what the run's process sees of VAEBENCH_TEST_MARK into the run folder."""

import os
from pathlib import Path

from vaebench import hookimpl


class EnvironmentProbe:
    name = "environment-probe"

    def on_run_start(self, run):
        Path(run["run_dir"], "environment.txt").write_text(os.environ.get("VAEBENCH_TEST_MARK", "unset"))


@hookimpl
def register_callbacks(register):
    register(EnvironmentProbe())
