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
        path = Path(top_module.__file__)
        if path.name == "__init__.py":
            sources = sorted(path.parent.rglob("*.py"))
            root = path.parent.parent
        else:
            sources, root = [path], path.parent
        for source in sources:
            if "__pycache__" in source.parts:
                continue
            data = source.read_bytes()
            self.files[source.relative_to(root).as_posix()] = data
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
