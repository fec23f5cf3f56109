"""The import side of a capture: the import lines model.py needs and the modules behind them,
each either pinned (a distribution in requirements.txt) or bundled (a local module).

`Imports` is what the closure walk (closure.py) hands a module or a library object to; it
reports a module it can neither pin nor carry (VJ210) into the walk's problem list.
"""
from __future__ import annotations

import importlib
import sys
import types

from ..catalog import problem
from ..errors import Problem
from . import requirements
from .bundle import LocalModules, unbundlable


class Imports:
    """Import lines (`lines`: line -> the name it binds) and the modules they need: third-party
    ones in `modules_used` (pinned later), local ones in `local` (bundled)."""

    def __init__(self, root_module: str, problems: list[Problem]):
        self.root_module = root_module
        self.problems = problems  # the walk's list: every problem in one place, in order
        self.lines: dict[str, str] = {}
        self.modules_used: set[str] = set()
        self.local = LocalModules()

    def add_module(self, name: str, module: types.ModuleType, attribute_chains) -> str:
        """`import module [as name]` (plus the submodules the uses reach); returns the line."""
        full = module.__name__
        line = f"import {full}" if full == name else f"import {full} as {name}"
        self.lines[line] = name
        for chain in sorted(attribute_chains):  # `import sklearn.linear_model` used as sklearn.linear_model.X
            sub = _longest_submodule(full, chain.split(".")[1:])
            if sub and full == name:
                self.lines[f"import {sub}"] = name
                self.require(sys.modules[sub])  # a namespace package is pinned by what is used
        self.require(module)
        return line

    def add_library_object(self, name: str, value) -> tuple[str, str] | None:
        """`from module import qualname [as name]` for a class or function a library exposes;
        returns (line, module), or None when `value` is not one."""
        module_name = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", None)
        if not (isinstance(module_name, str) and isinstance(qualname, str)) or "<" in qualname:
            return None
        if module_name in (self.root_module, "__main__") or "." in qualname:
            return None
        if not isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)) and not callable(value):
            return None
        public = _public_module(module_name, qualname, value)
        if public is None:
            return None
        line = f"from {public} import {qualname}" + (f" as {name}" if name != qualname else "")
        self.lines[line] = name
        self.require(sys.modules[public])
        return line, public

    def require(self, module: types.ModuleType):
        why = unbundlable(module)
        if why is not None:
            self.problems.append(problem(
                "VJ210", f"module '{module.__name__}' {why}, so the package can neither pin "
                "nor carry it", name=module.__name__))
            return
        if requirements.is_local_module(module):
            self.local.add(module)
        else:
            self.modules_used.add(module.__name__)

    def require_named(self, module_name: str, import_if_needed: bool = False):
        module = sys.modules.get(module_name)
        if module is None and import_if_needed:
            module = _import_quietly(module_name)
        if module is not None:
            self.require(module)
        else:
            self.modules_used.add(module_name)


def origin(module_name: str) -> str:
    """Where a module comes from, for the summary: the standard library, a bundled local module,
    or its pinned distribution."""
    if requirements.is_stdlib(module_name):
        return "standard library"
    module = sys.modules.get(module_name)
    if module is not None and requirements.is_local_module(module):
        return f"local module {module_name} (bundled)"
    return requirements.requirement_for(module_name) or module_name


def _longest_submodule(base: str, attrs: list[str]) -> str | None:
    found = None
    for i in range(1, len(attrs) + 1):
        candidate = ".".join([base, *attrs[:i]])
        if candidate in sys.modules:
            found = candidate
    return found


def _public_module(module_name: str, qualname: str, value) -> str | None:
    """The shortest already-imported module path that exposes `value` under `qualname`."""
    parts = module_name.split(".")
    for i in range(1, len(parts) + 1):
        candidate = ".".join(parts[:i])
        module = sys.modules.get(candidate)
        if module is not None and getattr(module, qualname, None) is value:
            return candidate
    return None


def _import_quietly(name: str):
    """Import a module a method imports, to learn what provides it; None if it cannot be."""
    try:
        return importlib.import_module(name)
    except Exception:  # the method may guard the import; a failure here is not ours to report
        return None
