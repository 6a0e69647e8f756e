"""Exceptions that the CLI turns into one-line messages."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none: the reason in a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class UsageError(Exception):
    """Bad input from the user: the CLI prints the message on one line and exits with 2.

    The message names the problem and the fix.
    """


class PluginError(Exception):
    """A plugin failed to import or register and ``--strict`` is in force."""


class TrainingFailure(Exception):
    """A run failed (an exception or a non-finite loss); recorded, and the sweep goes on."""


class UnknownName(UsageError):
    """A name that no plugin registered."""

    def __init__(self, kind: str, name: str, known):
        known = sorted(known)
        listed = ", ".join(known) if known else "none installed"
        super().__init__(f"unknown {kind} '{name}'; known {kind}s: {listed}")
        self.kind, self.name, self.known = kind, name, known


class DuplicateName(Exception):
    """Two plugins registered the same name for the same kind of component."""

    def __init__(self, kind: str, name: str, first: str, second: str):
        super().__init__(
            f"{kind} '{name}' is registered by both plugin '{first}' and plugin '{second}'; "
            f"uninstall one of them or rename the {kind}"
        )
        self.kind, self.name, self.first, self.second = kind, name, first, second
