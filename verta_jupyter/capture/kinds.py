"""What kind of thing a notebook name is bound to: pure tests on names and objects, no state.

The closure walk (closure.py) asks these in order: a module dunder, an IPython-only name, a
stand-in for a builtin, a made function (lambda or closure), a definition, a wrapper, a cache.
"""
from __future__ import annotations

import __future__
import builtins
import functools
import inspect
import types

from . import cells

# Names IPython injects into builtins or the user namespace; absent where the model is deployed.
IPYTHON_ONLY = {"display", "get_ipython", "__IPYTHON__", "In", "Out", "_ih", "_oh", "_dh", "exit", "quit"}
MODULE_DUNDERS = {"__name__", "__doc__", "__file__", "__spec__", "__loader__", "__package__",
                  "__builtins__", "__annotations__", "__cached__"}
_IPYTHON_MODULES = ("IPython", "ipykernel", "ipywidgets", "google.colab")


def is_ipython_object(value) -> bool:
    """A callable IPython (or ipykernel, ipywidgets, Colab) made: not there when deployed."""
    module = getattr(value, "__module__", None) or getattr(value, "__name__", None)
    if not isinstance(module, str) or isinstance(value, types.ModuleType):
        return False
    return module.startswith(_IPYTHON_MODULES) and callable(value)


def stands_in_for_builtin(name: str, value) -> bool:
    builtin = getattr(builtins, name, None)
    return builtin is not None and getattr(value, "__wrapped__", None) is builtin


def compiled_with_future_annotations(obj) -> bool:
    flag = __future__.annotations.compiler_flag
    return any(code.co_flags & flag for code in cells.code_objects(obj))


def wrapped_candidates(obj):
    """Objects a wrapper holds: what it wraps (`__wrapped__`, `pyfunc`, `func`) or its closure."""
    for attribute in ("__wrapped__", "pyfunc", "func", "__func__"):
        inner = getattr(obj, attribute, None) if not isinstance(obj, type) else None
        if inner is not None:
            yield inner
    for cell in getattr(obj, "__closure__", None) or ():
        try:
            yield cell.cell_contents
        except ValueError:
            continue


def may_be_definition(obj) -> bool:
    return isinstance(obj, (type, types.FunctionType)) or is_cache_wrapper(obj)


def is_made_function(obj, root_module: str) -> bool:
    """A notebook lambda or a function made inside another function (a closure)."""
    return (isinstance(obj, types.FunctionType) and obj.__module__ in (root_module, "__main__")
            and "<" in obj.__qualname__)


def is_cache_wrapper(obj) -> bool:
    return isinstance(obj, functools._lru_cache_wrapper) and inspect.isfunction(getattr(obj, "__wrapped__", None))
