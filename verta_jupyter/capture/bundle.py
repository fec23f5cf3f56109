"""Local modules (a `helpers.py` beside the notebook) bundled into the package's `lib/` folder.

Such a module is not an installed distribution, so an import of it would break anywhere else.
Its source files are copied (with the local modules they import in turn) so the rebuilt
model imports it from the package, from any working directory.
"""
from __future__ import annotations

import ast
import os
import sys
import types
from pathlib import Path

from . import requirements


class LocalModules:
    """The files of every local module the model needs, keyed by path under `lib/`."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.names: set[str] = set()
        self.third_party: set[str] = set()  # modules the bundled files import

    def add(self, module: types.ModuleType) -> None:
        top = requirements.top_level(module.__name__)
        if top in self.names:
            return
        self.names.add(top)
        top_module = sys.modules.get(top, module)
        for source, root in _files_of(top_module):
            data = source.read_bytes()
            self.files[source.relative_to(root).as_posix()] = data
            if source.suffix == ".py":
                self._follow_imports(data, source)

    def _follow_imports(self, data: bytes, source: Path) -> None:
        try:
            tree = ast.parse(data, filename=os.fspath(source))
        except SyntaxError:
            return
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported = [node.module]
            else:
                continue
            for name in imported:
                module = sys.modules.get(name) or _import_if_local(name)
                if module is None:  # not imported yet (an import inside a function): still needed
                    self.third_party.add(name)
                elif requirements.is_local_module(module):
                    self.add(module)
                else:
                    self.third_party.add(name)


def unbundlable(module: types.ModuleType) -> str | None:
    """Why a module the model uses can be neither pinned nor bundled (None when it can): one
    that exists only in this process, or a compiled extension outside any distribution (a
    package carries source, not a binary built for one machine and one Python)."""
    import importlib.machinery

    name = module.__name__
    if (requirements.is_stdlib(name) or name == "__main__" or name in sys.builtin_module_names
            or requirements.distribution_of(name) is not None):
        return None
    path = getattr(module, "__file__", None)
    if not path:
        if getattr(module, "__path__", None):  # a namespace package: bundled from its folders
            return None
        return "exists only in this process (no file, no installed distribution)"
    if requirements.is_local_file(path) and path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        return f"is a compiled extension ({Path(path).name}) that no installed distribution provides"
    return None


def _import_if_local(name: str) -> types.ModuleType | None:
    """A local module a bundled file imports only inside a function: imported now, so it is
    bundled too. Installed and unknown modules are left alone (their requirement is by name)."""
    import importlib
    import importlib.util

    try:
        spec = importlib.util.find_spec(requirements.top_level(name))
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    if (spec is None or not origin or requirements.is_stdlib(name)
            or requirements.distribution_of(name) is not None or not requirements.is_local_file(origin)):
        return None
    try:
        return importlib.import_module(name)
    except Exception:  # a guarded import that fails here is not ours to report
        return None
_SKIPPED_PARTS = {"__pycache__", ".git", ".ipynb_checkpoints", ".mypy_cache", ".pytest_cache"}


def _files_of(module: types.ModuleType):
    """(file, the folder paths are relative to) for a module, or every file of a package.

    A package brings its data files too (`words.txt`, a JSON schema read beside its code); a
    namespace package (a folder without `__init__.py`, `src/` layouts) has only `__path__`.
    """
    folders = [Path(p) for p in getattr(module, "__path__", None) or ()]
    if not folders:
        path = getattr(module, "__file__", None)
        return [(Path(path), Path(path).parent)] if path else []
    found = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if path.is_file() and not (_SKIPPED_PARTS & set(relative.parts)) and \
                    not any(part.startswith(".") for part in relative.parts) and path.suffix not in (".pyc", ".pyo"):
                found.append((path, folder.parent))
    return found
