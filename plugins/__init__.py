"""vaebench's built-in plugins, installed as ``vaebench.plugins`` and registered through
the ``vaebench`` entry-point group exactly as a third-party package's plugins are."""
