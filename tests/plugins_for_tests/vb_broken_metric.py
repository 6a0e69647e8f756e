"""A metric plugin that raises: it must cost only its own column."""

from vaebench import hookimpl
from vaebench.evaluation.context import Column


class Broken:
    name = "broken"
    description = "always raises"
    columns = (Column("broken_value", "lower", "", "never computed"),)

    def __call__(self, ctx):
        raise RuntimeError("this metric is broken on purpose")


@hookimpl
def register_metrics(register):
    register(Broken())
