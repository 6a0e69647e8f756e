"""``--jobs N``: a suite's runs in up to N worker processes on one machine.

Up to N worker processes, started with ``spawn`` (nothing of the parent's threads or device
state is inherited), take the suite's runs x seeds from a queue. For each, a worker loads the
plugins as the parent did, prepares its own copy of the data and calls :func:`vaebench.execution.runner.run_one`,
the function a ``--jobs 1`` suite calls, so a run's numbers do not depend on ``--jobs``:
on a CPU they are the same to the last bit (tested). torch's threads are divided among
the workers. Progress and log lines come back through one queue to the parent's reporter,
so the display shows every active run.

A run that raises is recorded as failed by ``run_one``, as always. A worker that dies
(a segfault, the out-of-memory killer) costs only its own run: the parent records it as
failed with the exit code. If the parent is killed, every worker stops within a second
and keeps its last checkpoint, so ``--resume`` continues the suite; on Ctrl-C or SIGTERM
the parent stops its workers the same way before it exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queues
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("vaebench.runner")

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Task:
    """One run x seed, as a worker needs it: everything picklable."""

    suite: object  # vaebench.suite.Suite
    run_index: int
    seed: int
    out: Path
    resume: bool
    extend: bool
    device: str
    plugin_args: dict
    threads: int
    trackers: tuple = ()


def threads_per_job(jobs: int) -> int:
    """torch threads for each of ``jobs`` workers: the cores divided among them, at least one."""
    return max(1, (os.cpu_count() or 1) // jobs)


def run_parallel(tasks: list[Task], jobs: int, reporter) -> dict[tuple[int, int], dict]:
    """Run ``tasks`` in at most ``jobs`` worker processes; return each task's record by (run index, seed).

    Each worker is started once and takes tasks from a queue until none are left, so a
    suite of short runs pays the cost of starting Python, torch and the plugins once per
    worker, not once per run. The parent knows which task each worker is running: when a
    worker dies, that task is recorded as failed and a new worker takes its place."""
    context = multiprocessing.get_context("spawn")
    events, todo = context.Queue(), context.Queue()
    for index in range(len(tasks)):
        todo.put(index)
    workers = min(jobs, len(tasks))
    for _ in range(workers):
        todo.put(None)  # one stop sign per worker
    running: dict[int, int | None] = {}  # worker pid -> index of the task it runs
    processes: list = []
    records: dict[tuple[int, int], dict] = {}
    finished: set[int] = set()

    def start_worker():
        process = context.Process(target=_serve, args=(tasks, todo, events, os.getpid()), daemon=True, name="vaebench-worker")
        process.start()
        processes.append(process)

    def handle(event) -> None:
        kind, *payload = event
        if kind == "begin":
            pid, index = payload
            running[pid] = index
        elif kind == "record":
            index, record = payload
            task = tasks[index]
            records[(task.run_index, task.seed)] = record
            finished.add(index)
        elif kind == "log":
            level, message = payload
            log.log(level, "%s", message)
        else:
            getattr(reporter, kind)(*payload)

    try:
        for _ in range(workers):
            start_worker()
        while len(finished) < len(tasks):
            _drain(events, handle, timeout=POLL_SECONDS)
            for process in [p for p in processes if p.exitcode is not None]:
                processes.remove(process)
                _drain(events, handle, timeout=0)  # what the worker said before it exited
                index = running.pop(process.pid, None)
                if index is None or index in finished:
                    continue
                code = process.exitcode
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                task = tasks[index]
                records[(task.run_index, task.seed)] = _died(task, f"its worker process died ({how}); the other runs went on", reporter)
                finished.add(index)
                start_worker()  # it takes the stop sign the dead worker left
    finally:
        for process in processes:  # Ctrl-C, SIGTERM or an error here: stop the workers, keep their checkpoints
            if process.exitcode is None:
                process.terminate()
        for process in processes:
            process.join(timeout=10)
    return records


def _drain(events, handle, timeout: float) -> None:
    """Pass queued events to ``handle`` until the queue is empty (waiting up to ``timeout`` for the first)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            event = events.get(timeout=max(0.0, deadline - time.monotonic())) if timeout else events.get_nowait()
        except queues.Empty:
            return
        handle(event)
        timeout = 0


def _died(task: Task, reason: str, reporter) -> dict:
    """The record of a run whose worker died without one, written where the run's own would be."""
    from vaebench.atomic import write_json
    from vaebench.execution.records import METRICS_FILE, run_dir_of

    spec = task.suite.runs[task.run_index]
    record = {"run": spec.name, "variant": spec.variant, "seed": task.seed, "status": "failed",
              "reason": reason, "columns": [], "metric_errors": {}}
    run_dir = run_dir_of(task.out, spec.name, task.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / METRICS_FILE, record)
    reporter.finish(f"{spec.name} seed {task.seed}", "failed")
    return record


class QueueReporter:
    """A worker's reporter: every call goes to the parent's reporter through the queue."""

    def __init__(self, events):
        self.events = events

    def start(self, run, epochs):
        self.events.put(("start", run, epochs))

    def epoch(self, run, record):
        self.events.put(("epoch", run, {k: v for k, v in record.items() if isinstance(v, (int, float, str))}))

    def stage(self, run, text):
        self.events.put(("stage", run, text))

    def finish(self, run, status):
        self.events.put(("finish", run, status))


class QueueLogHandler(logging.Handler):
    def __init__(self, events):
        super().__init__(logging.WARNING)
        self.events = events

    def emit(self, record):
        self.events.put(("log", record.levelno, record.getMessage()))


def _stop_with_parent(parent: int) -> None:
    """Exit when the parent is gone (killed): the run keeps its last checkpoint for --resume."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def _serve(tasks: list[Task], todo, events, parent: int) -> None:
    """A worker process: runs tasks from ``todo`` until it takes a stop sign (None)."""
    threading.Thread(target=_stop_with_parent, args=(parent,), daemon=True).start()
    while True:
        index = todo.get()
        if index is None:
            return
        events.put(("begin", os.getpid(), index))
        events.put(("record", index, run_task(tasks[index], events)))


def run_task(task: Task, events) -> dict:
    """One run x seed in this process, reporting through ``events`` (anything with ``put``)."""
    import torch

    torch.set_num_threads(task.threads)
    vaebench_log = logging.getLogger("vaebench")
    if not any(isinstance(h, QueueLogHandler) for h in vaebench_log.handlers):
        vaebench_log.addHandler(QueueLogHandler(events))
    vaebench_log.propagate = False
    logging.getLogger("vaebench.plugins").setLevel(logging.ERROR)  # the parent reported the plugins already

    from vaebench.execution.records import run_dir_of
    from vaebench.execution.runner import Plan, callbacks_of, load_data, resolve_run, run_one
    from vaebench.plugin_manager import load_plugins

    plugins = load_plugins(**task.plugin_args)
    spec = task.suite.runs[task.run_index]
    run = resolve_run(spec, plugins)
    device = torch.device(task.device)
    data = load_data(spec.settings, plugins, device)
    plan = Plan(task.suite, task.out, task.resume, task.extend, [run], data, device, None, callbacks_of(plugins, task.trackers))
    return run_one(plan, run, task.seed, run_dir_of(task.out, spec.name, task.seed), QueueReporter(events))
