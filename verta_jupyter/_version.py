"""The package version, in a module of its own so that any layer can read it without importing
the public facade (`verta_jupyter/__init__.py` imports every layer lazily)."""

__version__ = "0.1.0"
