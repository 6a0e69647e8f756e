"""Page faults, time and peak memory of evaluation, with glibc's default heap and with vaebench.heap.

    python benchmarks/heap_faults.py digits [--variant mog-prior]
    python benchmarks/heap_faults.py mnist --data-dir ../shared/data

Each heap setting runs in a process of its own, on one torch thread.
  - digits: one process trains and evaluates two seeds of the variant (quick budget,
    every metric). It prints the second seed, because the first also pays the imports.
  - mnist: a copy of results/mnist-standard's gaussian seed 0 is re-evaluated with
    `vaebench evaluate --metrics elbo,is_nll,gaps --is-samples 200`.
Glibc only: elsewhere both settings are the defaults.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class MetricTimes(logging.Handler):
    """Collects evaluate()'s "metric NAME: SECONDS s" debug lines."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.seconds = {}

    def emit(self, record):
        if record.msg == "metric %s: %.2f s":
            self.seconds[record.args[0]] = round(record.args[1], 2)


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(kind: str, keep: bool, variant: str, data_dir: str | None) -> dict:
    import torch

    import vaebench.heap

    torch.set_num_threads(1)
    if not keep:
        vaebench.heap.keep_freed_memory = lambda: False  # what the CLI and the workers call
    times = MetricTimes()
    evaluation_log = logging.getLogger("vaebench.evaluation")
    evaluation_log.addHandler(times)
    evaluation_log.setLevel(logging.DEBUG)
    out = Path(tempfile.mkdtemp())
    started, faulted = time.perf_counter(), faults()
    if kind == "digits":
        from vaebench.execution.parallel import Task, run_task
        from vaebench.plugin_manager import load_plugins
        from vaebench.suite import make_suite

        class Events:
            def put(self, event):
                pass

        suite = make_suite([variant], 2, settings={}, source="benchmarks/heap_faults.py")
        args = load_plugins().load_args
        run_task(Task(suite, 0, 0, out, False, False, "cpu", args, 1), Events())  # the imports' seed
        times.seconds.clear()
        started, faulted = time.perf_counter(), faults()
        record = run_task(Task(suite, 0, 1, out, False, False, "cpu", args, 1), Events())
        values = {"is_nll": record.get("is_nll"), "neg_elbo": record.get("neg_elbo")}
    else:
        from vaebench.cli import main

        source = ROOT / "results/mnist-standard/runs/gaussian/seed-0"
        shutil.copytree(source, out / "runs/gaussian/seed-0")
        shutil.copy(ROOT / "results/mnist-standard/suite.json", out)
        assert main(["-q", "evaluate", str(out), "--metrics", "elbo,is_nll,gaps", "--is-samples", "200",
                     "--data-dir", data_dir]) == 0
        record = json.loads((out / "runs/gaussian/seed-0/metrics.json").read_text())
        values = {key: record.get(key) for key in ("is_nll", "neg_elbo", "amortization_gap")}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    shutil.rmtree(out, ignore_errors=True)
    return {"heap": "kept" if keep else "glibc defaults", "seconds": round(time.perf_counter() - started, 1),
            "page_faults": faults() - faulted, "peak_rss_mib": round(usage.ru_maxrss / 1024), "metric_seconds": times.seconds,
            "values": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("digits", "mnist"))
    parser.add_argument("--variant", default="mog-prior")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--mode", choices=("kept", "default"), help=argparse.SUPPRESS)  # one setting, in this process
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.kind, args.mode == "kept", args.variant, args.data_dir)))
        return
    for mode in ("default", "kept"):
        command = [sys.executable, __file__, args.kind, "--variant", args.variant, "--data-dir", args.data_dir, "--mode", mode]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        print(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
