"""``--jobs N``: a suite's runs in up to N worker processes on one machine.

Up to N worker processes take the suite's runs x seeds one at a time from their parent
(:func:`run_parallel`). Where they come from:

* ``vaebench run`` on Linux forks them from its worker manager
  (:mod:`vaebench.execution.worker_manager`), a process forked from the command before it
  checks the suite, which has imported everything a run imports; the manager runs
  :func:`run_parallel` and sends its events and records back to the command;
* otherwise (the Python API, which must not fork its caller's process; macOS, where forking
  after its system libraries load is unsafe; Windows) they are forked from multiprocessing's
  fork server, which preloads :mod:`vaebench.execution.worker_imports`, or spawned where that
  server cannot start (:func:`worker_context`).

Either way a worker inherits no thread pool or device state that a tensor operation started,
and it takes its parent's environment with each task. For each task a worker loads the
plugins as the command did, prepares its own copy of the data and calls
:func:`vaebench.execution.runner.run_one`, the function a ``--jobs 1`` suite calls, so a run's
numbers do not depend on ``--jobs``. torch's threads are divided among the workers, and each
run's config.json records its ``torch_threads``: at the same thread count a CPU run's numbers
are the same to the last bit (tested); at another, torch's float32 sums may round differently in
the last bit, which training carries forward as differences in about the seventh significant
digit. Progress and log lines come back through each worker's own pipe to its parent, and from
there to the command's reporter, so the display shows every active run.

A run that raises is recorded as failed by ``run_one``, as always. A worker that dies
(a segfault, the out-of-memory killer) costs only its own run: its parent records it as
failed with the exit code. If a worker's parent is killed, the worker notices at once (its
parent's sentinel) and stops with its last checkpoint kept, so ``--resume`` continues the
suite; the fork server, which reads the command's end of a pipe, exits too. On Ctrl-C or
SIGTERM the parent stops its workers before it exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import wait
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


WORKER_IMPORTS = "vaebench.execution.worker_imports"


def worker_context():
    """How workers start: forked from a fork server that has imported :data:`WORKER_IMPORTS`
    (Linux), else spawned (macOS, where forking after its system libraries load is unsafe, and
    Windows, and wherever the server cannot start: it needs a Unix socket in a temporary folder)."""
    if sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods():
        from multiprocessing import forkserver

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([WORKER_IMPORTS])  # no effect once the server runs
        ensure_running = getattr(forkserver, "ensure_running", None)  # public, though not in the docs
        try:
            if ensure_running is not None:
                ensure_running()  # starts the server unless it runs; otherwise the first worker starts it
            return context
        except OSError as error:
            log.debug("no fork server (%s); spawning workers", error)
    return multiprocessing.get_context("spawn")


def run_parallel(tasks: list[Task], jobs: int, reporter, context=None, on_record=None) -> dict[tuple[int, int], dict]:
    """Run ``tasks`` in at most ``jobs`` worker processes; return each task's record by (run index, seed).

    ``context`` is how the workers start (:func:`worker_context` unless given); ``on_record``,
    if given, is called with each task's (run index, seed) and record as it arrives.

    Each worker is started once and runs tasks until none are left, so a suite of short
    runs pays the cost of starting Python, torch and the plugins once per worker, not once
    per run. Each worker talks to the parent over a pipe of its own, never a shared queue:
    a worker killed in the middle of a message (SIGKILL, the out-of-memory killer) breaks
    only its own pipe, where a shared queue's lock would be left held and the other
    workers would wait on it for ever. The parent hands out tasks one at a time, so it
    knows which task a dead worker was running: that task is recorded as failed and a
    new worker takes the rest."""
    context = context or worker_context()
    todo = list(range(len(tasks)))
    todo.reverse()  # pop() hands them out in suite order
    workers: dict = {}  # the parent's end of each worker's pipe -> _Worker
    records: dict[tuple[int, int], dict] = {}
    finished: set[int] = set()

    def start_worker() -> None:
        ours, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(theirs,), daemon=True, name="vaebench-worker")
        process.start()
        theirs.close()  # so the parent reads end-of-file when the worker dies
        workers[ours] = _Worker(process, ours)
        give_next(workers[ours])

    def give_next(worker: "_Worker") -> None:
        worker.index = todo.pop() if todo else None
        try:  # None: stop
            worker.pipe.send(None if worker.index is None else (tasks[worker.index], dict(os.environ)))
        except OSError:
            pass  # it died; its sentinel says so next

    def keep(key: tuple[int, int], record: dict) -> None:
        records[key] = record
        if on_record is not None:
            on_record(key, record)

    def died(worker: "_Worker") -> None:
        del workers[worker.pipe]
        index = worker.index
        if index is None or index in finished:
            return
        code = worker.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        task = tasks[index]
        keep((task.run_index, task.seed), _died(task, f"its worker process died ({how}); the other runs went on", reporter))
        finished.add(index)
        if todo:
            start_worker()

    try:
        for _ in range(min(jobs, len(tasks))):
            start_worker()
        while len(finished) < len(tasks):
            listening = [w.pipe for w in workers.values() if not w.broken] + [w.process.sentinel for w in workers.values()]
            wait(listening, timeout=POLL_SECONDS)
            for worker in list(workers.values()):
                exited = worker.process.exitcode is not None  # before reading: then all it said is in the pipe
                while not worker.broken and worker.pipe.poll():
                    if _read(worker, tasks, keep, finished, reporter):
                        give_next(worker)
                if exited:
                    died(worker)
    finally:
        for worker in workers.values():  # Ctrl-C, SIGTERM or an error here: stop the workers, keep their checkpoints
            if worker.process.exitcode is None:
                worker.process.terminate()
        for worker in workers.values():
            worker.process.join(timeout=10)
    return records


@dataclass
class _Worker:
    process: object
    pipe: object
    index: int | None = None  # the task it runs
    broken: bool = False  # its pipe hit end-of-file: the worker is gone


def _read(worker: _Worker, tasks, keep, finished, reporter) -> bool:
    """Take one message from ``worker``; True when it was the record of its task (it is free), given to ``keep``."""
    try:
        kind, *payload = worker.pipe.recv()
    except (EOFError, OSError):
        worker.broken = True
        return False
    if kind == "record":
        (record,) = payload
        task = tasks[worker.index]
        keep((task.run_index, task.seed), record)
        finished.add(worker.index)
        return True
    handle_event((kind, *payload), reporter)
    return False


def handle_event(event: tuple, reporter) -> None:
    """Pass what a worker said (a reporter call or a log line) to the parent's reporter or log."""
    kind, *payload = event
    if kind == "log":
        level, message = payload
        log.log(level, "%s", message)
    else:
        getattr(reporter, kind)(*payload)


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


class EventReporter:
    """A worker's reporter: every call goes to the parent's reporter through ``events`` (anything with ``put``)."""

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


class EventLogHandler(logging.Handler):
    def __init__(self, events):
        super().__init__(logging.WARNING)
        self.events = events

    def emit(self, record):
        self.events.put(("log", record.levelno, record.getMessage()))


def _stop_with_parent() -> None:
    """Exit when the parent is gone (killed): the run keeps its last checkpoint for --resume."""
    wait([multiprocessing.parent_process().sentinel])
    os._exit(1)


class PipeEvents:
    """A worker's end of its pipe, with the ``put`` of a queue: one message at a time, from any thread."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.lock = threading.Lock()

    def put(self, event) -> None:
        with self.lock:
            self.pipe.send(event)


def adopt_environment(environment: dict) -> None:
    """Make ``environment`` this process's own (a forked process has the one of its start)."""
    if os.environ != environment:
        os.environ.clear()
        os.environ.update(environment)


def become_child(events) -> None:
    """What a forked process of ours undoes of its parent: signal handlers (the command's turn
    SIGTERM into an exception; a worker is stopped by it) and vaebench's log handlers (they
    write to the command's stderr; a child's log lines go to ``events``). It also stops when its
    parent is gone."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    log_to(events)
    threading.Thread(target=_stop_with_parent, daemon=True).start()


def log_to(events) -> None:
    """vaebench's log lines in this process go to ``events`` only (a worker's or the manager's
    process is ours: whatever handlers it inherited or had from an earlier task are dropped)."""
    vaebench_log = logging.getLogger("vaebench")
    for handler in list(vaebench_log.handlers):
        vaebench_log.removeHandler(handler)
    vaebench_log.addHandler(EventLogHandler(events))
    vaebench_log.propagate = False


def _serve(pipe) -> None:
    """A worker process: runs the tasks the parent sends, each with the parent's environment, until it sends None."""
    events = PipeEvents(pipe)
    become_child(events)
    while (message := pipe.recv()) is not None:
        task, environment = message
        adopt_environment(environment)
        events.put(("record", run_task(task, events)))


def run_task(task: Task, events) -> dict:
    """One run x seed in this process, reporting through ``events`` (anything with ``put``)."""
    import torch

    from vaebench.heap import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(task.threads)
    log_to(events)
    logging.getLogger("vaebench.plugins").setLevel(logging.ERROR)  # the parent reported the plugins already

    from vaebench.execution.records import run_dir_of
    from vaebench.execution.runner import Plan, callback_provenance, callbacks_of, load_data, resolve_run, run_one
    from vaebench.plugin_manager import load_plugins

    plugins = load_plugins(**task.plugin_args)
    spec = task.suite.runs[task.run_index]
    run = resolve_run(spec, plugins)
    device = torch.device(task.device)
    data = load_data(spec.settings, plugins, device)
    callbacks = callbacks_of(plugins, task.trackers)
    plan = Plan(task.suite, task.out, task.resume, task.extend, [run], data, device, None, callbacks,
                callback_provenance=callback_provenance(plugins, callbacks))
    return run_one(plan, run, task.seed, run_dir_of(task.out, spec.name, task.seed), EventReporter(events))
