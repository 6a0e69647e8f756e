"""``vaebench run --jobs N`` on Linux: the process that starts the workers, forked from the command.

A run imports about 2.4 s of libraries only when it gets to them (torch's compiler stack on
the optimizer's first step, torchvision, scikit-learn's metrics, torchmetrics, matplotlib).
``--jobs 1`` pays that once. Workers that each import them pay it in every worker, on cores
that could be training. So the command, once it has imported what it needs to check a suite
(:data:`~vaebench.execution.worker_imports.BASE_MODULES`) and before it loads any plugin or
runs a tensor operation, forks one manager process. The manager imports the run's libraries
(:data:`~vaebench.execution.worker_imports.RUN_MODULES`) while the command loads its plugins
and checks the suite, then takes the suite's tasks and runs them with
:func:`~vaebench.execution.parallel.run_parallel`, its workers forked from itself: each
starts with every import done, and those objects frozen (:func:`gc.freeze`, as Python's
documentation advises before a fork without exec), so that a worker's garbage collections
skip them and leave their pages shared. Everything else is as ``run_parallel`` does it in
the command: one task at a time per worker, a dead worker costs only its run, the parent's
environment goes with the tasks. The manager sends every event and record back over its pipe.

If the command is killed, the manager notices (its parent's sentinel) and exits, and then
its workers notice theirs. On Ctrl-C or SIGTERM the command stops the manager, which stops
its workers first. Where forking is unsafe or unavailable (macOS, Windows), and in the
Python API, which must not fork the caller's process, workers come from
:func:`~vaebench.execution.parallel.worker_context` instead.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
from multiprocessing.connection import wait

from vaebench.execution.parallel import (EventReporter, PipeEvents, Task, adopt_environment, become_child, handle_event,
                                         run_parallel, _died)
from vaebench.execution.worker_imports import import_pyplot, import_run_modules  # and BASE_MODULES: forked, the manager has them


class WorkerManager:
    """The command's end of the manager: :meth:`run` a suite's tasks, :meth:`close` when done."""

    def __init__(self, process, pipe):
        self.process, self.pipe = process, pipe

    def run(self, tasks: list[Task], jobs: int, reporter) -> dict[tuple[int, int], dict]:
        """Run ``tasks`` in at most ``jobs`` workers; return each task's record by (run index, seed)."""
        try:
            self.pipe.send((tasks, jobs, dict(os.environ)))
        except OSError:
            pass  # the manager is gone; its sentinel says so below
        import_pyplot()  # for the combined figures at the end, now while the manager imports (--jobs 1 has it from its runs)
        records: dict[tuple[int, int], dict] = {}
        try:
            while True:
                wait([self.pipe, self.process.sentinel])
                try:
                    if not self.pipe.poll():
                        break  # the manager exited and said everything it had to say
                    kind, *payload = self.pipe.recv()
                except (EOFError, OSError):
                    break
                if kind == "done":
                    return records
                if kind == "record":
                    key, record = payload
                    records[key] = record
                else:
                    handle_event((kind, *payload), reporter)
        except BaseException:  # Ctrl-C, SIGTERM: the manager stops its workers, keeping their checkpoints
            self.close()
            raise
        self.process.join(timeout=10)
        code = self.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        for task in tasks:
            if (task.run_index, task.seed) not in records:
                reason = f"the process that starts the workers died ({how}); continue with --resume"
                records[(task.run_index, task.seed)] = _died(task, reason, reporter)
        return records

    def close(self) -> None:
        """Stop the manager if it still runs (unused, or interrupted) and wait for it."""
        if self.process.exitcode is None:
            self.process.terminate()
        self.process.join(timeout=30)
        self.pipe.close()


def start_worker_manager() -> WorkerManager | None:
    """Fork the manager now, or None where workers are not forked (see the module's notes)."""
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    process = context.Process(target=_manage, args=(theirs,), name="vaebench-workers")  # not daemonic: it has children
    process.start()
    theirs.close()
    return WorkerManager(process, ours)


def _manage(pipe) -> None:
    """The manager process: the run's imports, then the tasks the command sends, if it sends any."""
    events = PipeEvents(pipe)
    become_child(events)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the command, which stops the manager
    import_run_modules()
    gc.freeze()  # the imports' objects: the workers' collections skip them and leave their pages shared
    try:
        message = pipe.recv()
    except EOFError:  # the command ended without a suite for it
        return
    tasks, jobs, environment = message
    adopt_environment(environment)
    signal.signal(signal.SIGTERM, _exit)  # so that run_parallel stops the workers on its way out
    run_parallel(tasks, jobs, EventReporter(events), context=multiprocessing.get_context("fork"),
                 on_record=lambda key, record: events.put(("record", key, record)))
    events.put(("done",))


def _exit(signum, frame):
    raise SystemExit(128 + signum)
