"""What ``--jobs`` workers import before their first task, in the process they are forked from.

Two sets:

* :data:`BASE_MODULES`, what the parent imports before it checks a suite: torch, pandas,
  pydantic, vaebench's training and evaluation, and scikit-learn's datasets for 8x8 digits,
  the default dataset (about 2.5 s of one core). Importing this module imports them, which is
  how multiprocessing's fork server preloads them (:func:`vaebench.execution.parallel.worker_context`).
* :data:`RUN_MODULES`, what a run imports only when it gets there: the compiler stack
  torch.optim loads on an optimizer's first step, torchvision, the metrics' libraries and
  matplotlib (about 2.4 s more). The command's worker manager
  (:mod:`vaebench.execution.worker_manager`) imports them once, while the parent checks the
  suite, so that no worker pays them; ``--jobs 1`` pays them once, in its first run.

A library that is missing, or fails to import, is left to the run that needs it, where its
error is reported as usual. Nothing here runs a tensor operation: a process that forks must
not have started OpenMP's threads or CUDA.
"""

from __future__ import annotations

import importlib

BASE_MODULES = (
    "vaebench.execution.runner",
    "vaebench.execution.parallel",
    "sklearn.datasets",
)

RUN_MODULES = (
    "torch._dynamo",
    "torchvision.utils",
    "sklearn.cluster",
    "sklearn.decomposition",
    "sklearn.metrics",
    "torchmetrics.image.fid",
    "torchmetrics.image.kid",
    "safetensors.torch",
)


def import_quietly(names) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the run that needs the library reports its error
            pass


def import_pyplot() -> None:
    """matplotlib's pyplot on the backend vaebench draws with."""
    try:
        from vaebench.reporting.figures import pyplot

        pyplot()
    except Exception:  # noqa: BLE001 - a figure reports its own error when it is drawn
        pass


def import_run_modules() -> None:
    """:data:`RUN_MODULES` and pyplot."""
    import_quietly(RUN_MODULES)
    import_pyplot()


import_quietly(BASE_MODULES)
