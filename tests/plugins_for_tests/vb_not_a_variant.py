"""A plugin that registers a variant without subclassing vaebench.variant.Variant (refused when it loads)."""

from vaebench import hookimpl


class NotAVariant:
    name = "not-a-variant"

    def build(self, context):
        raise AssertionError("never reached: the registry refuses this object")


@hookimpl
def register_variants(register):
    register(NotAVariant())
