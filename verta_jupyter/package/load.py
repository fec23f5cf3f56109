"""Rebuild a class from a model package in this process.

Source is the durable record: `load_package` verifies every digest, then runs model.py as a
module with a unique name (two packages may hold classes of the same name). The class.pkl fast
path is taken only when asked for and only when Python and cloudpickle versions match exactly;
anything else falls back to source with a note, never to a crash.

The proof that a package stands alone (a fresh process) is `worker.rebuild`, which runs this
function in a worker.
"""
from __future__ import annotations

import itertools
import platform
import sys
import types
from pathlib import Path

from ..errors import PackageError
from .format import package_digest, verify_package

_counter = itertools.count(1)


def load_package(path, *, use_pickle: bool = False) -> type:
    """The class rebuilt from the model package at `path` (digests verified first).

    `cls.__verta_package__` records where it came from: path, manifest, how it was loaded, notes.
    """
    path = Path(path).resolve()
    manifest = verify_package(path)
    _check_tied_python(path, manifest)
    notes: list[str] = []
    cls = _from_class_pickle(path, manifest, notes) if use_pickle else None
    loaded_from = "class.pkl" if cls is not None else "model.py"
    if cls is None:
        cls = _from_source(path, manifest)
    cls.__verta_package__ = {"path": str(path), "manifest": manifest, "loaded_from": loaded_from,
                             "notes": notes, "digest": package_digest(manifest)}
    return cls


def _check_tied_python(path: Path, manifest: dict) -> None:
    """Refuse, never crash: bytecode pickled under one Python minor can segfault another."""
    tied = manifest.get("tied_to_python")
    here = "%d.%d" % sys.version_info[:2]
    if tied and tied != here:
        names = ", ".join(manifest.get("tied_values") or []) or "some values"
        raise PackageError(
            f"the model package {path} holds notebook code pickled as bytecode ({names}), which "
            f"loads only under Python {tied}; this is Python {here}. Load it with Python {tied}, or "
            "re-capture the model with those functions defined by `def` in a cell so they are "
            "saved as source.")


def _from_source(path: Path, manifest: dict) -> type:
    module_name = f"_vj_model_{package_digest(manifest)[:12]}_{next(_counter)}"
    model_py = path / "model.py"
    module = types.ModuleType(module_name)
    module.__file__ = str(model_py)
    sys.modules[module_name] = module  # dataclasses and pickle look the module up while it runs
    saved_flag = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # never write __pycache__ into a (possibly read-only) package
    try:
        # dont_inherit: this file's `from __future__ import annotations` must not turn the
        # model's annotations into strings (model.py states its own future imports)
        exec(compile(model_py.read_text(), str(model_py), "exec", dont_inherit=True), module.__dict__)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PackageError(f"model.py of {manifest['class_name']} failed to run: "
                           f"{type(exc).__name__}: {exc}. {_hint(exc, manifest)}") from exc
    finally:
        sys.dont_write_bytecode = saved_flag
    cls = getattr(module, manifest["class_name"], None)
    if not isinstance(cls, type):
        raise PackageError(f"model.py does not define class {manifest['class_name']!r}")
    return cls


def _hint(exc: Exception, manifest: dict) -> str:
    """Missing requirements explain an ImportError only; anything else is the model's own code."""
    if isinstance(exc, ImportError):
        return (f"Are the packages in requirements.txt installed? "
                f"({', '.join(manifest['requirements']) or 'none needed'})")
    return ("The notebook code in model.py raised while the model was being defined (see the "
            "traceback); re-run the notebook's cells in order and capture again.")


def _from_class_pickle(path: Path, manifest: dict, notes: list[str]) -> type | None:
    if not (path / "class.pkl").exists():
        notes.append("no class.pkl in the package: loaded from source")
        return None
    try:
        import cloudpickle
    except ImportError:
        notes.append("cloudpickle is not installed: loaded from source")
        return None
    here = (platform.python_version(), cloudpickle.__version__)
    there = (manifest["python"], manifest["cloudpickle"])
    if here != there:
        notes.append(f"class.pkl refused: written by Python {there[0]} + cloudpickle {there[1]}, "
                     f"this is Python {here[0]} + cloudpickle {here[1]}; loaded from source")
        return None
    try:
        cls = cloudpickle.loads((path / "class.pkl").read_bytes())
    except Exception as exc:  # e.g. lru_cache helpers (cloudpickle issue #178)
        notes.append(f"class.pkl failed to load ({type(exc).__name__}: {exc}); loaded from source")
        return None
    return cls
