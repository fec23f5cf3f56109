"""A local cache of fetched artifacts and model packages, keyed by content digest.

Fetching the same bytes again (another run, another process, the same store or not) costs
nothing. Entries appear atomically: a fetch lands in a staging folder that is renamed to the
digest's folder, so a reader never sees half an entry and two processes racing for the same
digest both end up with the winner's complete copy.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .stores.base import ArtifactInfo, Progress, Store


def cache_root(store: Store | None = None) -> Path:
    """$VERTA_JUPYTER_CACHE; else a writable local store's own `cache/` folder (so a store in
    a temporary folder leaves nothing behind); else ~/.cache/verta_jupyter (XDG respected)."""
    env = os.environ.get("VERTA_JUPYTER_CACHE")
    if env:
        return Path(env).expanduser()
    root = getattr(store, "root", None)
    if isinstance(root, Path) and not getattr(store, "read_only", True):
        return root / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "verta_jupyter"


def fetch_cached(store: Store, kind: str, owner_id: str, info: ArtifactInfo,
                 progress: Progress | None = None) -> Path:
    """The local path of an artifact's content, fetched from the store on first use."""
    algorithm, _, hexdigest = info.digest.partition(":")
    name = _safe_name(info)
    # the same bytes may be logged under several file names: one entry per (content, name)
    slot = hashlib.sha256(name.encode()).hexdigest()[:8]
    entry = cache_root(store) / algorithm / hexdigest[:2] / f"{hexdigest}.{slot}"
    target = entry / name
    if target.exists():
        if _size(target) == info.size:
            return target
        evict(target)  # edited or truncated in place: fetch a fresh copy
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{hexdigest[:12]}-", dir=entry.parent))
    try:
        store.fetch_artifact(kind, owner_id, info.key, staging / target.name, progress=progress)
        try:
            os.rename(staging, entry)
        except OSError:
            if not target.exists():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _safe_name(info: ArtifactInfo) -> str:
    if info.type == "model":
        return "package"
    name = Path(info.filename or "").name
    return name if name not in ("", ".", "..") else "artifact"


def evict(target: Path) -> None:
    """Remove a cache entry (the folder holding `target`)."""
    shutil.rmtree(target.parent, ignore_errors=True)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
