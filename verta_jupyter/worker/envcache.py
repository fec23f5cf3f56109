"""The clean-environment cache's housekeeping: which environment is in use, when each was last
used, and pruning the rest (envproof.py builds and finds them).

Under the cache root::

    <key>/                       a whole environment; <key>/vj-env.json is written last, and its
                                 modification time is the environment's last use (touched on use)
    .building-<key>-*/           one being built (envproof.py)
    .pruning-<key>-*/            one being deleted: renamed out of place first, so an environment
                                 is either whole at <key>/ or absent
    .use/<key>.<pid>.<random>    a use marker: process <pid> is using (or about to use) <key>
    .use/<key>.prune             a pruner is deciding about <key> (created exclusively)

Pruning (after a new environment is built, and `verta-jupyter envs prune`) removes an
environment that is neither among the `keep` most recently used nor used in the last `days`
days, and never one a live process is using. The exclusion needs no OS lock, only exclusive
file creation: a user writes its use marker, then looks for a prune marker; a pruner writes its
prune marker, then looks for use markers. Whichever looks second sees the other, so they never
both go ahead: the pruner backs off, the user waits for the pruner to finish (a rename).
A use marker of a process that is gone counts for nothing and is swept.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .scratch import owner_alive

__all__ = ["EnvLease", "CachedEnvironment", "acquire", "list_environments",
           "prune_environments", "touch", "DEFAULT_KEEP", "DEFAULT_DAYS"]

INFO = "vj-env.json"  # written last inside a built environment: its presence marks it whole
DEFAULT_KEEP = 5  # environments kept whatever their age (the most recently used)
DEFAULT_DAYS = 14.0  # and any used this recently
_USE = ".use"
_PRUNE_WAIT_SECONDS = 30.0  # a pruner holds its marker for a rename, never this long
_POLL_SECONDS = 0.05


@dataclass
class CachedEnvironment:
    """One environment in the cache, as `list_environments` sees it."""

    key: str
    path: Path
    last_used: float  # seconds since the epoch
    requirements: list[str] = field(default_factory=list)
    in_use: bool = False
    whole: bool = True  # False: no vj-env.json (damaged), rebuilt on next use


class EnvLease:
    """A use marker held while a process uses an environment; `release()` (or leaving a `with`
    block) removes it. A process that dies without releasing leaves a marker that counts for
    nothing once the process is gone."""

    def __init__(self, marker: Path | None):
        self.marker = marker

    def release(self) -> None:
        if self.marker is not None:
            try:
                self.marker.unlink()
            except OSError:
                pass
            self.marker = None

    def __enter__(self) -> EnvLease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(root: Path, key: str, *, wait: float = _PRUNE_WAIT_SECONDS) -> EnvLease:
    """Mark environment `key` in use by this process, then wait out a pruner deciding about it
    (it backs off or finishes within a rename). After this, no pruner removes `key` until the
    lease is released. Best effort on a read-only cache (nothing to prune there either)."""
    uses = root / _USE
    try:
        uses.mkdir(parents=True, exist_ok=True)
        marker = uses / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:12]}"
        marker.touch(exist_ok=False)
    except OSError:
        return EnvLease(None)
    deadline = time.monotonic() + wait
    while _pruner_live(uses / f"{key}.prune") and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)  # the pruner saw no marker before ours: let it finish its rename
    return EnvLease(marker)


def touch(path: Path) -> None:
    """Record a use of the environment at `path` (its vj-env.json's modification time)."""
    try:
        os.utime(path / INFO)
    except OSError:  # a read-only cache still works; it only forgets the use
        pass


def list_environments(root: Path) -> list[CachedEnvironment]:
    """The environments in the cache, most recently used first."""
    found = []
    for entry in _entries(root):
        info_path = entry / INFO
        try:
            last_used = info_path.stat().st_mtime
            requirements = json.loads(info_path.read_text()).get("requirements", [])
            whole = True
        except (OSError, ValueError, AttributeError):
            try:
                last_used, requirements, whole = entry.stat().st_mtime, [], False
            except OSError:
                continue  # removed while we looked
        found.append(CachedEnvironment(entry.name, entry, last_used, list(requirements),
                                       in_use=_in_use(root, entry.name), whole=whole))
    return sorted(found, key=lambda e: e.last_used, reverse=True)


def prune_environments(root: Path, *, keep: int = DEFAULT_KEEP, days: float = DEFAULT_DAYS,
                       spare: tuple[str, ...] = ()) -> list[CachedEnvironment]:
    """Remove every environment that is neither among the `keep` most recently used nor used in
    the last `days` days, unless a live process uses it (or its key is in `spare`). Returns
    what was removed. Also sweeps dead processes' use markers and interrupted deletions."""
    root = Path(root)
    _sweep(root)
    cutoff = time.time() - days * 86400.0
    removed = []
    for rank, env in enumerate(list_environments(root)):
        if rank < keep or env.last_used >= cutoff or env.key in spare:
            continue
        if _remove_unless_used(root, env.key):
            removed.append(env)
    return removed


def _remove_unless_used(root: Path, key: str) -> bool:
    uses = root / _USE
    prune_marker = uses / f"{key}.prune"
    try:
        uses.mkdir(parents=True, exist_ok=True)
        fd = os.open(prune_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except OSError:  # another pruner is on it (or the cache is read-only)
        return False
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        if _in_use(root, key):  # a user marked it before we looked: it stays
            return False
        doomed = root / f".pruning-{key}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(root / key, doomed)  # Windows refuses while its python runs: it stays
        except OSError:
            return False
    finally:
        try:
            prune_marker.unlink()
        except OSError:
            pass
    shutil.rmtree(doomed, ignore_errors=True)  # out of place already: no reader can see half
    return True


def _in_use(root: Path, key: str) -> bool:
    for marker in _markers(root, key):
        if _marker_live(marker):
            return True
    return False


def _markers(root: Path, key: str) -> list[Path]:
    try:
        return [p for p in (root / _USE).iterdir()
                if p.name.startswith(f"{key}.") and not p.name.endswith(".prune")]
    except OSError:
        return []


def _marker_live(marker: Path) -> bool:
    try:
        pid = int(marker.name.split(".")[1])
        return owner_alive(pid, marker.stat().st_mtime)
    except (ValueError, IndexError):
        return False  # not a marker of ours
    except OSError:
        return False  # released while we looked


def _pruner_live(prune_marker: Path) -> bool:
    try:
        text = prune_marker.read_text().strip()
        touched = prune_marker.stat().st_mtime
    except OSError:
        return False  # no pruner
    if not text.isdigit():  # a pruner between creating the file and writing its pid
        return time.time() - touched < 60.0  # (or one killed right then, long ago)
    return owner_alive(int(text), touched)


def _entries(root: Path) -> list[Path]:
    try:
        return sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _sweep(root: Path) -> None:
    """Use and prune markers of processes that are gone; deletions a killed pruner left."""
    try:
        entries = list((root / _USE).iterdir())
    except OSError:
        entries = []
    for marker in entries:
        live = (_pruner_live(marker) if marker.name.endswith(".prune") else _marker_live(marker))
        if not live:
            try:
                marker.unlink()
            except OSError:
                pass
    for doomed in Path(root).glob(".pruning-*"):
        shutil.rmtree(doomed, ignore_errors=True)
