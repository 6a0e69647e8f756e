"""``--executor ray``: each run x seed is a Ray task, on a local Ray instance or a cluster.

Install with ``pip install 'vaebench[ray]'``. Without ``--ray-address`` a local Ray
instance starts (and stops at the end); with it, the suite joins that cluster
(``ray start --head`` on one machine, ``ray start --address HEAD:6379`` on the others,
then ``vaebench run --suite FILE --executor ray --ray-address HEAD:6379``).

Each task declares its resources: ``--cpus-per-run`` CPUs (its torch threads) and, on a
GPU, ``--gpus-per-run`` GPUs, a fraction packing several small runs on one device
(0.25: four at once). A task runs :func:`vaebench.execution.parallel.run_task`, the code of
a local worker, so its numbers are those of ``--jobs 1``.

Storage: the tasks write their run folders under ``--out`` themselves, so on a cluster
``--out`` (and ``--data-dir``) must be shared storage mounted at the same path on every node
(NFS, a cloud file system); the driver then writes the leaderboard from them. A task whose
worker dies is retried once by Ray; if it dies again its run is recorded as failed and the
others go on. ``--resume`` works as for a local suite: it reads the run folders.
"""

from __future__ import annotations

from vaebench.errors import UsageError
from vaebench.execution.parallel import Task, _died, handle_event, run_task

POLL_SECONDS = 0.2


def run_on_ray(tasks: list[Task], reporter, address: str | None, gpus_per_run: float) -> dict[tuple[int, int], dict]:
    try:
        import ray
        from ray.util.queue import Queue
    except ImportError:
        raise UsageError("--executor ray needs Ray, which is not installed: pip install 'vaebench[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise UsageError(f"--executor ray could not start or join {where} ({str(exc).splitlines()[0]}); "
                             "check --ray-address and that `ray status` answers there") from None
    try:
        events = Queue()
        remote = ray.remote(_ray_task)
        refs = {}
        for task in tasks:
            gpus = gpus_per_run if task.device.startswith("cuda") else 0
            ref = remote.options(num_cpus=task.threads, num_gpus=gpus, max_retries=1, retry_exceptions=False).remote(task, events)
            refs[ref] = task
        records: dict[tuple[int, int], dict] = {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_SECONDS)
            _forward(events, reporter, records)
            for ref in ready:
                task = refs[ref]
                try:
                    records[(task.run_index, task.seed)] = ray.get(ref)
                except Exception as exc:  # the worker died twice (Ray's retry included), or Ray lost the task
                    reason = f"its Ray task failed after Ray's retry ({type(exc).__name__}); the other runs went on"
                    records[(task.run_index, task.seed)] = _died(task, reason, reporter)
        _forward(events, reporter, records)
        return records
    finally:
        if started_here:
            ray.shutdown()


def _forward(events, reporter, records) -> None:
    """Move what the tasks said from Ray's queue to the reporter (records come back by ray.get)."""
    for event in events.get_nowait_batch(events.qsize()) if events.qsize() else []:
        handle_event(event, reporter)


def _ray_task(task: Task, events) -> dict:
    return run_task(task, events)
