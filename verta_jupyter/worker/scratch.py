"""Temporary folders named by their owner, so a later process can clean up after a dead one.

Every folder this package keeps in the system temp directory is `vj-<kind>-<pid>-<random>`
(`scratch_dir`). A kernel that is killed never runs its atexit clean-up, so the first folder a
process makes sweeps the folders of processes that no longer exist (`sweep_stale`). A folder
counts as its owner's while a process with that pid exists and was started before the folder
was last touched: a recycled pid belongs to a younger process, so it does not keep a dead
owner's folder alive.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

from ..package.valuefiles import SCRATCH_NAME as _NAME
from ..package.valuefiles import in_own_scratch
from .limits import psutil_or_none

__all__ = ["scratch_dir", "sweep_stale", "remove_scratch", "owner_alive"]

_swept = threading.Event()


def scratch_dir(kind: str) -> Path:
    """A new empty folder `vj-<kind>-<pid>-<random>` in the temp directory (swept once first)."""
    if not _swept.is_set():
        _swept.set()
        sweep_stale()
    return Path(tempfile.mkdtemp(prefix=f"vj-{kind}-{os.getpid()}-"))


def remove_scratch(path: str | os.PathLike | None) -> None:
    """Remove `path` if it is (inside) one of this process's scratch folders; else leave it.

    The guard matters: callers pass package paths that may be the user's own folders."""
    if path is not None and in_own_scratch(path):
        shutil.rmtree(path, ignore_errors=True)


def sweep_stale(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove the `vj-*` folders of processes that are gone; returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(root or tempfile.gettempdir()))
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.fullmatch(entry.name)
        if match is None or int(match[2]) == os.getpid():
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or not _mine(entry):
                continue
            if _owner_alive(int(match[2]), entry.stat(follow_symlinks=False).st_mtime):
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def _mine(entry: os.DirEntry) -> bool:
    # on a shared temp directory, another user's folders are theirs to clean
    getuid = getattr(os, "getuid", None)
    return getuid is None or entry.stat(follow_symlinks=False).st_uid == getuid()


def owner_alive(pid: int, touched: float) -> bool:
    """Whether process `pid` exists and is the one that touched a file at `touched` (a recycled
    pid is younger). Other owner-named markers (envproof's use markers) ask this too."""
    return _owner_alive(pid, touched)


def _owner_alive(pid: int, touched: float) -> bool:
    psutil = psutil_or_none()
    if psutil is None:
        return _pid_exists(pid)
    try:
        process = psutil.Process(pid)
        started = process.create_time()
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # exists, but we may not look at it: assume it is the owner
        return True
    return started <= touched + 1.0  # a younger process only recycled the pid


def _pid_exists(pid: int) -> bool:
    """Without psutil: POSIX can ask (a recycled pid then keeps a folder); elsewhere assume yes."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's live process
        return True
    return True
