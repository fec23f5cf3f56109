"""Capture a class model, and everything it needs from the notebook, as standalone source.

`capture_model(MyModel)` -> `CapturedModel`: the generated model.py text, pickled values,
bundled local modules, pinned requirements, a dependency list for people, and warnings.
`CapturedModel.save(path)` writes the model package (see `verta_jupyter.package`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..catalog import problem
from ..errors import CaptureError, Problem
from ..package.format import MISSING, write_package
from . import emit, fingerprint, requirements
from .closure import Closure, Dependency

__all__ = ["capture_model", "CapturedModel", "Dependency"]


@dataclass
class CapturedModel:
    """Everything needed to rebuild a class elsewhere; `save(path)` writes the package."""

    cls: type
    class_name: str
    source: str  # model.py
    requirements: list[str]
    dependencies: list[Dependency]
    warnings: list[Problem]
    values: dict[str, object] = field(default_factory=dict)  # captured values by name (for checks)
    pickled: dict[str, Any] = field(default_factory=dict)  # name -> values.StoredValue (values/ files)
    bundled: dict[str, bytes] = field(default_factory=dict)  # lib/ files
    class_pickle: bytes | None = None  # class.pkl fast path, when cloudpickle can dump the class
    class_pickle_skipped: str = ""  # why there is no class.pkl although cloudpickle could make one
    defined_in: str = ""  # "cell line 3"
    fingerprint: dict[str, str] = field(default_factory=dict)  # path -> digest, at capture time
    tied: list[str] = field(default_factory=list)  # values pickled with bytecode (no source found)

    def save(self, path, *, sample_input=MISSING, sample_output=MISSING, artifact_keys=()) -> Path:
        """Write the model package to directory `path` (created; must be empty or absent)."""
        return write_package(self, Path(path), sample_input=sample_input,
                             sample_output=sample_output, artifact_keys=artifact_keys)


def capture_model(cls, namespace: dict | None = None, cell_source: str | None = None) -> CapturedModel:
    """Capture class `cls` with the notebook helpers, globals and imports it uses.

    `namespace` is where its names are looked up (default: the namespace of the module that
    defined it: the notebook's for a notebook class). `cell_source` is the text of the cell
    that defined it, needed only for a class with no methods. Raises `CaptureError` listing
    every problem found.
    """
    _check_is_class(cls)
    module = sys.modules.get(cls.__module__)
    if namespace is None:
        namespace = vars(module) if module is not None else {}
    if module is not None and cls.__module__ != "__main__" and not _captured_by_source(module):
        return _captured_by_import(cls, module)
    closure = Closure.of(cls, namespace, cls.__module__, cell_source)
    items = emit.dependency_order(closure.items, cls.__name__)
    source = emit.render(cls.__name__, __version__, list(closure.imports), items, bool(closure.local.files),
                         closure.future_annotations)
    pinned = _pins(closure.modules_used | closure.local.third_party)
    big = _big_values(items)
    return CapturedModel(
        cls=cls, class_name=cls.__name__, source=source, requirements=pinned,
        dependencies=list(closure.dependencies.values()), warnings=closure.warnings,
        values=closure.values, pickled={i.name: i.pickled for i in items if i.pickled is not None},
        bundled=closure.local.files, class_pickle=None if big else _class_pickle(cls),
        class_pickle_skipped=f"its captured values ({big}) would be stored twice" if big else "",
        defined_in=closure.definitions[0].origin if closure.definitions else "",
        fingerprint=_fingerprint(closure, namespace), tied=[i.name for i in items if i.tied])


def _fingerprint(closure: Closure, namespace: dict) -> dict[str, str]:
    """The captured objects as they are now, for validation's fidelity proof (VJ504)."""
    names = [name for name, item in closure.items.items()
             if item.kind != "import" and not name.startswith("_vj_")]
    known = {}  # a captured array was hashed as it was written: not hashed a second time
    for name, item in closure.items.items():
        digest = item.pickled.whole_array_digest(namespace.get(name)) if item.pickled is not None else None
        if digest is not None:
            known[id(namespace[name])] = (namespace[name], digest)
    return fingerprint.fingerprint(namespace, names, {closure.root_module}, known)


def _check_is_class(cls) -> None:
    if isinstance(cls, type):
        return
    if hasattr(type(cls), "predict"):
        name = type(cls).__name__
        raise CaptureError(problems=[problem(
            "VJ103", f"got an instance of '{name}', not the class", name=name,
            remedy=f"Pass the class itself (`{name}`), not an instance (`{name}(...)`).")])
    raise CaptureError(problems=[problem("VJ101", f"expected a class, got {type(cls).__name__} {cls!r:.60}")])


def _captured_by_source(module) -> bool:
    """Notebook classes and classes from local .py files are captured by source."""
    return module.__name__ == "__main__" or requirements.is_local_module(module) or not getattr(module, "__file__", None)


def _captured_by_import(cls: type, module) -> CapturedModel:
    line = f"from {module.__name__} import {cls.__qualname__}"
    dep = Dependency(cls.__name__, "library", line, requirements.requirement_for(module.__name__) or module.__name__)
    source = emit.render(cls.__name__, __version__, [line], [], False)
    return CapturedModel(cls=cls, class_name=cls.__name__, source=source,
                         requirements=_pins({module.__name__}), dependencies=[dep], warnings=[],
                         class_pickle=_class_pickle(cls))


# class.pkl pickles the globals its methods read all over again: past this size of captured
# values, the fast path (which saves little: values are unpickled either way) doubles the package.
CLASS_PICKLE_VALUE_LIMIT = 1 << 20


def _big_values(items) -> str:
    size = sum(len(i.pickled) for i in items if i.pickled is not None)
    return f"{size / (1 << 20):.1f} MiB" if size > CLASS_PICKLE_VALUE_LIMIT else ""


def _pins(modules: set[str]) -> list[str]:
    return requirements.pins(modules)


def _class_pickle(cls: type) -> bytes | None:
    import cloudpickle

    try:
        return cloudpickle.dumps(cls, protocol=4)
    except Exception:  # the source is the durable record; the fast path is optional
        return None

