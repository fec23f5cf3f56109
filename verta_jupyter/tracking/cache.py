"""A local cache of fetched artifacts and model packages, keyed by content digest.

Fetching the same bytes again (another run, another process, the same store or not) costs
nothing. Entries appear atomically: a fetch lands in a staging folder that is renamed to the
digest's folder, so a reader never sees half an entry and two processes racing for the same
digest both end up with the winner's complete copy.

A cache entry is never trusted for what it looks like (its size, its own manifest): every hit
is hashed again and compared with the digest the *store* recorded, walking exactly what an
import could see (every file, links refused), and an entry that differs is replaced by a fresh
fetch. A new entry is checked the same way before it is published.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from ..errors import StoreError
from ..package.paths import UnsafePath, check_relpath
from .stores.base import ArtifactInfo, Progress, Store, hash_file, tree_digest


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


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
    if not isinstance(info.digest, str) or not _DIGEST.fullmatch(info.digest):
        # the digest names the cache folder: a forged one ("sha256:../../x") must not
        raise StoreError(f"artifact {info.key!r} in {store.location} has a recorded digest "
                         f"{info.digest!r} that is not sha256:<64 hex>; nothing was fetched. "
                         "Run `verta-jupyter store check` on the store")
    algorithm, _, hexdigest = info.digest.partition(":")
    name = _safe_name(info)
    # the same bytes may be logged under several file names: one entry per (content, name)
    slot = hashlib.sha256(name.encode()).hexdigest()[:8]
    entry = cache_root(store) / algorithm / hexdigest[:2] / f"{hexdigest}.{slot}"
    target = entry / name
    if target.exists() or target.is_symlink():
        if content_digest(target, info.type) == info.digest:
            return target
        evict(target)  # edited, truncated or re-signed in place: fetch a fresh copy
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{hexdigest[:12]}-", dir=entry.parent))
    try:
        store.fetch_artifact(kind, owner_id, info.key, staging / target.name, progress=progress)
        got = content_digest(staging / target.name, info.type)
        if got != info.digest:
            raise StoreError(f"artifact {info.key!r} fetched from {store.location} has digest "
                             f"{got} but the store recorded {info.digest}; nothing was cached. "
                             "Run `verta-jupyter store check` on the store")
        try:
            os.rename(staging, entry)
        except OSError as exc:
            # a lost race leaves the winner's copy, which is trusted only once verified too
            if content_digest(target, info.type) != info.digest:
                raise StoreError(f"cannot put artifact {info.key!r} into the cache at {entry} "
                                 f"({exc.strerror or exc}); delete that folder (the cache is "
                                 "always safe to delete) and fetch again") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _safe_name(info: ArtifactInfo) -> str:
    """The logged file's base name if it is one plain name on every platform, else a
    neutral one (the name is data too)."""
    if info.type == "model" or not isinstance(info.filename, str):
        return "package" if info.type == "model" else "artifact"
    name = PurePosixPath(info.filename).name
    try:
        return check_relpath(name)
    except UnsafePath:
        return "artifact"


def evict(target: Path) -> None:
    """Remove a cache entry (the folder holding `target`); a link planted in its place is
    removed itself, never followed."""
    entry = target.parent
    if entry.is_symlink():
        entry.unlink()
    else:
        shutil.rmtree(entry, ignore_errors=True)


def content_digest(path: Path, type_: str) -> str | None:
    """The digest a store records for this content ("sha256:<hex>" of a file, the tree digest
    of a directory), or None if the content cannot be what a store wrote: a symbolic link
    anywhere, or anything but regular files and folders."""
    if type_ not in ("directory", "model"):
        return hash_file(path)[0] if _regular_file(path) else None
    if path.is_symlink() or not path.is_dir():
        return None
    entries = []
    for dirpath, dirnames, filenames in os.walk(path):  # every entry, hidden ones included
        for name in dirnames:
            if (Path(dirpath) / name).is_symlink():
                return None  # os.walk would not descend into it, but an import would
        for name in filenames:
            file = Path(dirpath) / name
            if not _regular_file(file):
                return None
            digest, size = hash_file(file)
            entries.append((file.relative_to(path).as_posix(), digest, size))
    return tree_digest(entries)


def _regular_file(path: Path) -> bool:
    return not path.is_symlink() and path.is_file()
