"""Built-in metrics: test -ELBO, IS-NLL, NMI, throughput and pictures."""

from vaebench import hookimpl
from vaebench.metrics import BUILTIN_METRICS


@hookimpl
def register_metrics(register):
    for metric in BUILTIN_METRICS:
        register(metric())
