"""verta_jupyter: turn a class model written in a notebook into a deployable model package.

`%load_ext verta_jupyter` registers the `%%verta_model` cell magic (`%unload_ext` removes it). The Python API below is the
layer under the magic. Names are resolved lazily so that `import verta_jupyter` stays light: the
rebuild side runs in clean interpreters without IPython, ipywidgets, pandas or requests.
"""
from __future__ import annotations

import importlib

from ._version import __version__
from .errors import VertaError

# public name -> module that defines it (imported on first use)
_EXPORTS = {
    "Client": "verta_jupyter.tracking.client",
    "capture_model": "verta_jupyter.capture",
    "CapturedModel": "verta_jupyter.capture",
    "load_package": "verta_jupyter.package.load",
    "validate": "verta_jupyter.validation.validate",
    "ValidationReport": "verta_jupyter.validation.validate",
    "PredictPanel": "verta_jupyter.panel.widget",
    "to_json_compatible": "verta_jupyter.jsonify.output",
    "from_json_compatible": "verta_jupyter.jsonify.input",
    "Endpoint": "verta_jupyter.panel.endpoint",
}

__all__ = sorted([*_EXPORTS, "VertaError", "load_ipython_extension", "unload_ipython_extension",
                  "__version__"])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'verta_jupyter' has no attribute {name!r}")


def __dir__():
    return __all__


def load_ipython_extension(ipython) -> None:
    """Register the `%%verta_model` cell magic (`%load_ext verta_jupyter`)."""
    from .magic import register

    register(ipython)


def unload_ipython_extension(ipython) -> None:
    """Remove the `%%verta_model` cell magic (`%unload_ext verta_jupyter`; `%reload_ext` too)."""
    from .magic import unregister

    unregister(ipython)
