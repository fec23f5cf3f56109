"""Map modules to the installed distributions that provide them, pinned (`sklearn` -> scikit-learn==1.9.1).

Only what the model uses is listed, never the whole environment. Standard-library modules need
no requirement; local modules (a `helpers.py` beside the notebook) are bundled, not required.

A top-level name can be shipped by several distributions (a namespace package: `google` comes
from protobuf, googleapis-common-protos, ...), so the distribution is the one whose file list
(its RECORD) holds the imported module's own file, not the first that mentions the top name.
A local version label (`2.3.1+cu121`) is dropped from the pin, as MLflow does: package indexes
serve no local versions, so `torch==2.3.1+cu121` would not install anywhere.
"""
from __future__ import annotations

import functools
import importlib.metadata as metadata
import os
import re
import sys
import sysconfig
import types
from typing import Iterable

_INSTALL_DIRS = tuple(
    os.path.realpath(p) for p in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")} if p
)
# PEP 440: public version, then "+" and a local label of alphanumerics separated by . - _
_LOCAL_LABEL = re.compile(r"^(?P<public>[^+\s]+)\+[a-zA-Z0-9]+(?:[-_.][a-zA-Z0-9]+)*$")


def _path_fingerprint() -> tuple:
    """sys.path, with the mtime of each site-packages folder on it: a path change or an install
    mid-session (a new dist-info folder) invalidates what was learnt about the environment.
    Other folders (the notebook's own, which autosave touches) are not watched."""
    stamps = []
    for entry in sys.path:
        stamp = None
        if os.path.basename(entry.rstrip("/\\")) in ("site-packages", "dist-packages"):
            try:
                stamp = os.stat(entry).st_mtime_ns
            except OSError:
                pass
        stamps.append((entry, stamp))
    return tuple(stamps)


def _packages_distributions() -> dict[str, list[str]]:
    return _packages_distributions_for(_path_fingerprint())


@functools.lru_cache(maxsize=2)
def _packages_distributions_for(fingerprint: tuple) -> dict[str, list[str]]:
    # ~135 ms on 3.11: computed once per state of sys.path.
    return metadata.packages_distributions()


@functools.lru_cache(maxsize=512)
def _files_of(dist_name: str, fingerprint: tuple) -> frozenset[str] | None:
    """The distribution's installed files as absolute, normalised paths (None if unknown)."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    if dist.files is None:
        return None
    return frozenset(os.path.normcase(os.path.abspath(dist.locate_file(f))) for f in dist.files)


def top_level(module_name: str) -> str:
    return module_name.split(".", 1)[0]


def is_stdlib(module_name: str) -> bool:
    top = top_level(module_name)
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


def candidates(module_name: str) -> list[str]:
    """Every installed distribution that ships files under the top-level name of `module_name`."""
    return list(dict.fromkeys(_packages_distributions().get(top_level(module_name)) or []))


def distribution_of(module_name: str) -> str | None:
    """The distribution providing module `module_name`, if any.

    With several candidates, the one whose file list holds the module's file wins; without a
    file to look at (a namespace package itself, a module not imported), the first candidate.
    """
    found = candidates(module_name)
    if len(found) <= 1:
        return found[0] if found else None
    return _owner_of_file(_module_file(module_name), found) or found[0]


def _module_file(module_name: str) -> str | None:
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None) if module is not None else None
    return os.path.normcase(os.path.abspath(path)) if isinstance(path, str) else None


def _owner_of_file(path: str | None, dists: list[str]) -> str | None:
    if path is None:
        return None
    fingerprint = _path_fingerprint()
    for dist in dists:
        files = _files_of(dist, fingerprint)
        if files is not None and path in files:
            return dist
    return None


def is_namespace_package(module_name: str) -> bool:
    """A PEP 420 package (no __init__.py): several distributions may share it."""
    module = sys.modules.get(module_name)
    return (module is not None and getattr(module, "__file__", None) is None
            and hasattr(module, "__path__"))


def pinned_version(version: str) -> str:
    """The version to pin: without a local label (`2.3.1+cu121` -> `2.3.1`), as MLflow does."""
    match = _LOCAL_LABEL.match(version)
    return match.group("public") if match else version


def requirement_for(module_name: str) -> str | None:
    """'dist==version' for a third-party module; None for stdlib, local or unknown modules."""
    if is_stdlib(module_name):
        return None
    dist = distribution_of(module_name)
    if dist is None:
        return None
    try:
        return f"{dist}=={pinned_version(metadata.version(dist))}"
    except metadata.PackageNotFoundError:
        return None


def pins(module_names: Iterable[str]) -> list[str]:
    """The sorted, de-duplicated requirements for the modules a model uses.

    A namespace package used through one of its submodules (`import google.protobuf`) is
    pinned by that submodule alone: the namespace itself would name an arbitrary provider.
    """
    names = set(module_names)
    used = {n for n in names if not (is_namespace_package(n) and len(candidates(n)) > 1
                                     and any(m.startswith(n + ".") for m in names))}
    return sorted({r for m in used if (r := requirement_for(m))}, key=str.lower)


def is_local_module(module: types.ModuleType) -> bool:
    """A module from a file that no installed distribution provides (bundled into the package)."""
    if is_stdlib(module.__name__) or module.__name__ == "__main__":
        return False
    path = getattr(module, "__file__", None)
    if not path:
        return False
    if distribution_of(module.__name__) is not None:
        return False
    return not os.path.realpath(path).startswith(_INSTALL_DIRS)


def is_local_file(path: str) -> bool:
    """A module file outside the interpreter's install folders (a local module, not installed)."""
    return not os.path.realpath(path).startswith(_INSTALL_DIRS)
