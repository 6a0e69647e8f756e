"""A plugin that registers a variant named like a built-in one."""

from vaebench import hookimpl
from vaebench.variant import Variant


class Impostor(Variant):
    name = "gaussian"
    description = "not the built-in gaussian"


@hookimpl
def register_variants(register):
    register(Impostor())
