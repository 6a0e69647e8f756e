"""A callback that writes which of the run's late imports its process had when the run started,
and sets VAEBENCH_TEST_MARK in the process that loads it first (then every process it is handed to)."""

import gc
import json
import os
import sys
from pathlib import Path

from vaebench import hookimpl

os.environ.setdefault("VAEBENCH_TEST_MARK", f"plugins loaded first in process {os.getpid()}")


class ImportProbe:
    name = "import-probe"

    def on_run_start(self, run):
        from vaebench.execution.worker_imports import RUN_MODULES

        seen = {"imported": [m for m in RUN_MODULES if m in sys.modules], "mark": os.environ.get("VAEBENCH_TEST_MARK"),
                "pid": os.getpid(), "frozen": gc.get_freeze_count()}
        Path(run["run_dir"], "imports.json").write_text(json.dumps(seen))


@hookimpl
def register_callbacks(register):
    register(ImportProbe())
