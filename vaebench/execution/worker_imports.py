"""What the parent imports before it checks a suite, imported by the fork server of ``--jobs`` workers.

:mod:`vaebench.execution.parallel` starts the server as the command starts, so these imports
(torch, pandas, pydantic, vaebench's training and evaluation, and scikit-learn's datasets for
8x8 digits, the default dataset: about 3.5 s of one core) run beside the parent's own, and are
done about when the suite has been checked; every worker forked after that begins with them
in memory. What only a run needs (the compiler stack torch.optim loads on an optimizer's first
call, the metrics' libraries) each worker imports itself, on its own core, as ``--jobs 1``
does in its first run: in the server it would hold up every worker's start. A library that
is missing, or fails to import, is left to the run that needs it, where its error is reported
as usual. Nothing here runs a tensor operation: a process that forks must not have started
OpenMP's threads or CUDA.
"""

import importlib

MODULES = (
    "vaebench.execution.runner",
    "vaebench.execution.parallel",
    "sklearn.datasets",
)

for _name in MODULES:
    try:
        importlib.import_module(_name)
    except Exception:  # noqa: BLE001 - the fork server must start whatever a library does
        pass
