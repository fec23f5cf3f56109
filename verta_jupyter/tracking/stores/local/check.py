"""The integrity check of a `LocalStore` (`verta-jupyter store check`).

Problems (damage): SQLite corruption, an entity whose parent is gone, fields or artifacts of a
missing owner, an artifact without files or whose recorded size/digest disagrees with its files,
a referenced blob that is missing or whose bytes do not hash to its name.
Notes (harmless): blobs nothing refers to and temporary files, both left by writes that were
interrupted before their transaction — exactly what a crash is allowed to leave behind;
`collect_garbage` removes them once they are old enough not to belong to a write in progress.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..base import PARENT_KIND, CheckResult, tree_digest

if TYPE_CHECKING:
    from .store import LocalStore


def check_store(store: LocalStore, *, verify_blobs: bool = True) -> CheckResult:
    """Check every table and every referenced blob of `store`; never modifies it."""
    result = CheckResult()
    db = store._db()
    db.execute("BEGIN")  # one consistent snapshot of every table (WAL readers do not block)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchall()
        if integrity != [("ok",)]:
            result.problems += [f"sqlite: {row[0]}" for row in integrity]
        _check_entities(db, result)
        referenced = _check_artifacts(db, result)
    finally:
        db.execute("ROLLBACK")
    _check_blobs(store, referenced, result, verify_blobs)
    return result


def _check_entities(db, result: CheckResult) -> None:
    rows = db.execute("SELECT id, kind, name, parent_id FROM entities").fetchall()
    ids = {row[0]: row[1] for row in rows}
    for id_, kind, name, parent in rows:
        result.counts[kind] = result.counts.get(kind, 0) + 1
        want = PARENT_KIND.get(kind, "?")
        if want is None and parent:
            result.problems.append(f"{kind} {name!r} ({id_}) has a parent but should not")
        elif want and ids.get(parent) != want:
            result.problems.append(f"{kind} {name!r} ({id_}) lost its parent {want} {parent!r}")
    for table in ("fields", "artifacts", "artifact_files"):
        for (owner,) in db.execute(f"SELECT DISTINCT owner_id FROM {table}"):
            if owner not in ids:
                result.problems.append(f"{table} belong to a missing owner {owner!r}")


def _check_artifacts(db, result: CheckResult) -> dict[str, int]:
    """Check each artifact against its files; return every referenced blob -> size."""
    files: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
    for owner, key, rel, blob, size in db.execute("SELECT * FROM artifact_files"):
        files.setdefault((owner, key), []).append((rel, blob, size))
    referenced: dict[str, int] = {}
    artifacts = db.execute("SELECT owner_id, key, type, size, digest FROM artifacts").fetchall()
    result.counts["artifacts"] = len(artifacts)
    for owner, key, type_, size, digest in artifacts:
        entries = files.pop((owner, key), [])
        label = f"artifact {key!r} of {owner}"
        if not entries:
            result.problems.append(f"{label} has no files")
            continue
        if type_ in ("directory", "model"):
            got = tree_digest((rel, "sha256:" + blob, sz) for rel, blob, sz in entries)
        else:
            got = "sha256:" + entries[0][1] if len(entries) == 1 else "several files"
        if got != digest:
            result.problems.append(f"{label}: recorded digest {digest} but its files give {got}")
        if sum(e[2] for e in entries) != size:
            result.problems.append(f"{label}: recorded size {size} differs from its files")
        for _, blob, sz in entries:
            referenced[blob] = sz
    for owner, key in files:
        result.problems.append(f"files of artifact {key!r} of {owner} without the artifact")
    return referenced


def _check_blobs(store: LocalStore, referenced: dict[str, int], result: CheckResult,
                 verify: bool) -> None:
    present = set(store.blobs.all())
    result.counts["blobs"] = len(present)
    for blob, size in sorted(referenced.items()):
        if blob not in present:
            result.problems.append(f"blob {blob} is missing")
        elif verify and (why := store.blobs.verify(blob, size)):
            result.problems.append(f"blob {blob}: {why}")
    unreferenced = present - set(referenced)
    if unreferenced:
        result.notes.append(f"{len(unreferenced)} blob(s) not referenced by any artifact "
                            "(left by interrupted writes; harmless)")
    strays = store.blobs.stray_temp_files()
    if strays:
        result.notes.append(f"{len(strays)} temporary file(s) in {store.blobs.tmp} "
                            "(left by interrupted writes; harmless)")


def collect_garbage(store: LocalStore, min_age: float) -> dict[str, int]:
    """Remove stray temporary files and unreferenced blobs older than `min_age` seconds.

    Blobs are deleted inside a write transaction: `put_artifact` checks its blobs under the
    same lock before committing a reference (and writes them again if they vanished), so a
    blob is never deleted out from under an artifact."""
    cutoff = time.time() - min_age
    removed = {"temp_files": 0, "blobs": 0, "bytes": 0}
    for path in store.blobs.stray_temp_files():
        _remove_if_old(path, cutoff, removed, "temp_files")

    def sweep(conn) -> None:
        referenced = {row[0] for row in conn.execute("SELECT DISTINCT blob FROM artifact_files")}
        for blob in list(store.blobs.all()):
            if blob not in referenced:
                _remove_if_old(store.blobs.path(blob), cutoff, removed, "blobs")

    store._write(sweep)
    return removed


def _remove_if_old(path, cutoff: float, removed: dict[str, int], what: str) -> None:
    try:
        stat = path.stat()
        if stat.st_mtime < cutoff:
            path.unlink()
            removed[what] += 1
            removed["bytes"] += stat.st_size
    except FileNotFoundError:
        pass
