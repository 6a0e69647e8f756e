"""vaebench: train and compare VAE variants under matched budgets.

The Python API mirrors the CLI: ``vaebench.run(...)`` trains a suite and
returns its leaderboard as a pandas DataFrame.
"""

__version__ = "0.1.0"


def run(*args, **kwargs):
    """Train and evaluate a suite; see :func:`vaebench.api.run`."""
    from vaebench.api import run as _run

    return _run(*args, **kwargs)


from vaebench.hookspecs import hookimpl  # noqa: E402

__all__ = ["run", "hookimpl", "__version__"]
