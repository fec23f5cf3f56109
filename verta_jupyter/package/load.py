"""Rebuild a class from a model package in this process.

Source is the durable record: `load_package` verifies every digest, then runs model.py as a
module with a unique name (two packages may hold classes of the same name). The class.pkl fast
path is taken only when asked for and only when Python and cloudpickle versions match exactly;
anything else falls back to source with a note, never to a crash.

The proof that a package stands alone (a fresh process) is `worker.rebuild`, which runs this
function in a worker.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import itertools
import platform
import sys
import types
from pathlib import Path

from ..errors import PackageError
from .format import package_digest, verify_package

_counter = itertools.count(1)


def load_package(path, *, use_pickle: bool = False, expected_digest: str = "") -> type:
    """The class rebuilt from the model package at `path` (digests verified first).

    With `expected_digest` (the manifest digest a caller checked, e.g. against a store) any
    other package is refused before its code runs. `cls.__verta_package__` records where it
    came from: path, manifest, how it was loaded, notes.
    """
    path = Path(path).resolve()
    manifest = verify_package(path)
    if expected_digest and package_digest(manifest) != expected_digest:
        raise PackageError(f"the package at {path} changed after it was opened (its manifest now "
                           f"hashes to {package_digest(manifest)[:12]}, not {expected_digest[:12]}); "
                           "it was not loaded. Load the model again from the store or the notebook")
    _bundled_modules_from_source(path)
    _check_tied_python(path, manifest)
    notes: list[str] = []
    cls = _from_class_pickle(path, manifest, notes) if use_pickle else None
    loaded_from = "class.pkl" if cls is not None else "model.py"
    if cls is None:
        cls = _from_source(path, manifest)
    cls.__verta_package__ = {"path": str(path), "manifest": manifest, "loaded_from": loaded_from,
                             "notes": notes, "digest": package_digest(manifest)}
    return cls


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Runs a bundled module from its verified source: never reads a .pyc (which verification
    would have to trust) and never writes one (which would make the package fail its next
    verification), even for an import inside predict, long after `load_package` returned."""

    def get_code(self, fullname):
        source_path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(source_path), source_path)


def _bundled_modules_from_source(path: Path) -> None:
    """Give the package's lib/ folder (model.py puts it on sys.path) a finder whose loader is
    source-only; the import system consults sys.path_importer_cache before any path hook."""
    lib = path / "lib"
    if lib.is_dir():
        sys.path_importer_cache[str(lib)] = importlib.machinery.FileFinder(
            str(lib), (_SourceOnlyLoader, importlib.machinery.SOURCE_SUFFIXES))


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
    model_py = path / "model.py"
    source = model_py.read_bytes()  # run the very bytes that were verified, not a re-read
    if hashlib.sha256(source).hexdigest() != manifest["files"].get("model.py"):
        raise PackageError(f"{path}: 'model.py' changed while it was being loaded (sha256 "
                           "mismatch); refusing to run it. Download or capture the package again.")
    module_name = f"_vj_model_{package_digest(manifest)[:12]}_{next(_counter)}"
    module = types.ModuleType(module_name)
    module.__file__ = str(model_py)
    sys.modules[module_name] = module  # dataclasses and pickle look the module up while it runs
    saved_flag = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # never write __pycache__ into a (possibly read-only) package
    try:
        # dont_inherit: this file's `from __future__ import annotations` must not turn the
        # model's annotations into strings (model.py states its own future imports)
        exec(compile(source, str(model_py), "exec", dont_inherit=True), module.__dict__)
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
        data = (path / "class.pkl").read_bytes()
        if hashlib.sha256(data).hexdigest() != manifest["files"].get("class.pkl"):
            raise PackageError(f"{path}: 'class.pkl' changed while it was being loaded")
        cls = cloudpickle.loads(data)  # the very bytes verified, never a re-read
    except Exception as exc:  # e.g. lru_cache helpers (cloudpickle issue #178)
        notes.append(f"class.pkl failed to load ({type(exc).__name__}: {exc}); loaded from source")
        return None
    return cls
