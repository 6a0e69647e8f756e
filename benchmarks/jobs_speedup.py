"""`--jobs 2` against `--jobs 1` on the 6-run digits suite, and where a run's time goes.

    python benchmarks/jobs_speedup.py [--pairs 5] [--old CHECKOUT]
    python benchmarks/jobs_speedup.py --steps

Pairs: `vaebench run gaussian kl-annealing mog-prior --seeds 2 --quiet` (quick budget: 50 epochs,
IS-NLL K = 1000, every metric) with `--jobs 1` and `--jobs 2`, back to back, alternating which goes
first. For each command it prints the wall time and when its first run began (from the run folders).
`--old CHECKOUT` adds a `--jobs 2` command run from another checkout of vaebench (PYTHONPATH), e.g.
`git worktree add /tmp/old 1b2c2c6`. It ends with each pair's ratio and their median.

Steps: kl-annealing's two seeds in one process that has made every import a run makes, on 2 and
on 1 torch threads, each in a process of its own: the second seed's train_seconds and each of its
metrics' seconds (the first seed pays one-off costs), and the seconds both runs spent in garbage
collection, with the imports' objects left alone and, on 1 thread, also frozen (gc.freeze, as the
workers' manager does).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from heap_faults import MetricTimes

SUITE = ["gaussian", "kl-annealing", "mog-prior", "--seeds", "2", "--quiet"]


def timed_suite(jobs: int, pythonpath: str | None = None) -> dict:
    out = Path(tempfile.mkdtemp()) / "suite"
    env = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    started = time.time()
    subprocess.run([sys.executable, "-m", "vaebench", "run", *SUITE, "--jobs", str(jobs), "--out", str(out)], env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - started
    begins = [path.stat().st_mtime - json.loads(path.read_text())["wall_seconds"] - started
              for path in out.glob("runs/*/seed-*/metrics.json")]
    return {"wall": round(wall, 1), "first_run_begins": round(min(begins), 1)}


def pairs(count: int, old: str | None) -> None:
    ratios = []
    for i in range(count):
        kinds = ["jobs 1", "jobs 2"] + (["jobs 2 old"] if old else [])
        results = {}
        for kind in kinds if i % 2 == 0 else kinds[::-1]:
            results[kind] = timed_suite(1 if kind == "jobs 1" else 2, old if kind.endswith("old") else None)
            print(f"pair {i + 1} {kind}: {results[kind]['wall']} s, first run begins at {results[kind]['first_run_begins']} s", flush=True)
        ratios.append(results["jobs 1"]["wall"] / results["jobs 2"]["wall"])
    print("ratios", ", ".join(f"{r:.2f}" for r in ratios), f"median {statistics.median(ratios):.2f}x")


def one_process(threads: int, freeze: bool) -> dict:
    """kl-annealing's second seed after its first, in this process."""
    from vaebench.execution.parallel import Task, run_task
    from vaebench.execution.worker_imports import import_run_modules
    from vaebench.heap import keep_freed_memory
    from vaebench.plugin_manager import load_plugins
    from vaebench.suite import make_suite

    keep_freed_memory()
    import_run_modules()
    if freeze:
        gc.freeze()
    collecting = {"seconds": 0.0, "since": 0.0}

    def on_gc(phase, info):
        if phase == "start":
            collecting["since"] = time.perf_counter()
        else:
            collecting["seconds"] += time.perf_counter() - collecting["since"]

    class Events:
        def put(self, event):
            pass

    times = MetricTimes()
    evaluation_log = logging.getLogger("vaebench.evaluation")
    evaluation_log.addHandler(times)
    evaluation_log.setLevel(logging.DEBUG)
    suite = make_suite(["kl-annealing"], 2, settings={}, source="benchmarks/jobs_speedup.py")
    args, out = load_plugins().load_args, Path(tempfile.mkdtemp())
    gc.callbacks.append(on_gc)
    run_task(Task(suite, 0, 0, out, False, False, "cpu", args, threads), Events())  # the first run's one-off costs
    times.seconds.clear()
    record = run_task(Task(suite, 0, 1, out, False, False, "cpu", args, threads), Events())
    gc.callbacks.remove(on_gc)
    return {"threads": threads, "frozen": freeze, "train_seconds": round(record["train_seconds"], 2),
            "metric_seconds": times.seconds, "gc_seconds_both_runs": round(collecting["seconds"], 3)}


def steps() -> None:
    for threads, freeze in ((2, False), (1, False), (1, True)):
        command = [sys.executable, __file__, "--one-process", str(threads)] + (["--freeze"] if freeze else [])
        print(subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--old", help="another checkout of vaebench, for a third command")
    parser.add_argument("--steps", action="store_true", help="where a run's time goes, instead of the pairs")
    parser.add_argument("--one-process", type=int, help=argparse.SUPPRESS)  # one steps measurement, in this process
    parser.add_argument("--freeze", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_process:
        print(json.dumps(one_process(args.one_process, args.freeze)))
    elif args.steps:
        steps()
    else:
        pairs(args.pairs, args.old)


if __name__ == "__main__":
    main()
