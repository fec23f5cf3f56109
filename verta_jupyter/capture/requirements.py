"""Map modules to the installed distributions that provide them, pinned (`sklearn` -> scikit-learn==1.9.1).

Only what the model uses is listed, never the whole environment. Standard-library modules need
no requirement; local modules (a `helpers.py` beside the notebook) are bundled, not required.
"""
from __future__ import annotations

import functools
import importlib.metadata as metadata
import os
import sys
import sysconfig
import types

_INSTALL_DIRS = tuple(
    os.path.realpath(p) for p in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")} if p
)


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    # ~135 ms on 3.11: computed once per process.
    return metadata.packages_distributions()


def top_level(module_name: str) -> str:
    return module_name.split(".", 1)[0]


def is_stdlib(module_name: str) -> bool:
    top = top_level(module_name)
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


def distribution_of(module_name: str) -> str | None:
    """The distribution providing top-level module `module_name`, if any."""
    dists = _packages_distributions().get(top_level(module_name))
    return dists[0] if dists else None


def requirement_for(module_name: str) -> str | None:
    """'dist==version' for a third-party module; None for stdlib, local or unknown modules."""
    if is_stdlib(module_name):
        return None
    dist = distribution_of(module_name)
    if dist is None:
        return None
    try:
        return f"{dist}=={metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return None


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

