"""The integrity check of a local store folder (`verta-jupyter store check`) and the sweeps of
garbage collection. `LocalStore` calls these with its connection and its `BlobFiles`; nothing
here touches the store object itself.

Problems (damage): an unreadable, truncated or garbled database (every sqlite3 error is a
problem, never a crash), a missing or wrong marker, a database that is missing or empty, an
entity whose parent is gone, fields or artifacts of a missing owner, an artifact without files
or whose recorded size/digest disagrees with its files, a file path or blob name in a row that
is not safe to use, a referenced blob that is missing or whose bytes do not hash to its name,
anything in blobs/ that is not a blob (a link, a misnamed file), unknown files in the folder.
Notes (harmless): blobs nothing refers to and temporary files, both left by writes that were
interrupted before their transaction — exactly what a crash is allowed to leave behind;
garbage collection removes them once they are old enough not to belong to a write in progress.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from ....package.paths import UnsafePath, check_relpath
from ..base import ARTIFACT_TYPES, FIELDS, PARENT_KIND, CheckResult, tree_digest
from .blobs import HEX, BlobFiles
from .folder import DB_NAME, FORMAT, KNOWN_ENTRIES, MARKER

#: table -> columns the code reads; a database without them is damaged (or not ours)
_TABLES = {
    "entities": {"seq", "id", "kind", "name", "parent_id", "created_at"},
    "fields": {"owner_id", "field", "key", "value"},
    "artifacts": {"owner_id", "key", "type", "filename", "size", "digest", "meta", "created_at"},
    "artifact_files": {"owner_id", "key", "relpath", "blob", "size"},
}


def check_folder(root: Path, *, conn: sqlite3.Connection | None = None,
                 verify_blobs: bool = True) -> CheckResult:
    """Check the store folder at `root`: its layout, every table (in one consistent snapshot)
    and every blob. Never modifies the store and never raises for damage: it reports it."""
    result = CheckResult()
    try:
        _check_all(root, conn, verify_blobs, result)
    except OSError as exc:  # a folder or file we may not read: say which, never crash
        result.problems.append(f"cannot read {exc.filename or root}: {exc.strerror or exc}; "
                               "check the store folder's permissions")
    return result


def _check_all(root: Path, conn: sqlite3.Connection | None, verify_blobs: bool,
               result: CheckResult) -> None:
    marker_version = _check_layout(root, result)
    referenced = None
    own = conn is None
    if own:
        conn = _open_read_only(root / DB_NAME, result)
    if conn is not None:
        try:
            referenced = _check_database(conn, marker_version, result)
        finally:
            if own:
                conn.close()
    _check_blobs(BlobFiles(root), referenced, result, verify_blobs)


def _check_layout(root: Path, result: CheckResult) -> int | None:
    """Marker, database file and the folder's entries; return the marker's version."""
    version = None
    marker = root / MARKER
    if marker.is_symlink() or not marker.is_file():
        result.problems.append(f"the marker {MARKER} is missing or not a regular file")
    else:
        try:
            data = json.loads(marker.read_text())
            if not isinstance(data, dict) or data.get("format") != FORMAT or \
                    not isinstance(data.get("version"), int):
                raise ValueError(f"it says {data!r}")
            version = data["version"]
        except (OSError, ValueError) as exc:
            result.problems.append(f"the marker {MARKER} is unreadable or wrong ({exc}); it "
                                   f'should hold {{"format": "{FORMAT}", "version": N}}')
    db = root / DB_NAME
    if db.is_symlink() or not db.is_file():
        result.problems.append(f"the database {DB_NAME} is missing or not a regular file: "
                               "restore it from a backup")
    elif db.stat().st_size == 0:
        result.problems.append(f"the database {DB_NAME} is empty (zero bytes): restore it from "
                               "a backup")
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if entry.name not in KNOWN_ENTRIES and not entry.name.startswith(".marker-"):
                result.problems.append(f"unexpected {entry.name!r} in the store folder "
                                       "(nothing verta_jupyter writes): move it out")
            elif entry.name in ("blobs", "tmp", "cache") and not entry.is_dir():
                result.problems.append(f"{entry.name}/ is not a real folder")
    return version


def _open_read_only(db: Path, result: CheckResult) -> sqlite3.Connection | None:
    """A connection that cannot write: `immutable` when no WAL file exists (SQLite then
    creates none either), read-only mode when one does (its commits are part of the data)."""
    if db.is_symlink() or not db.is_file() or db.stat().st_size == 0:
        return None  # already reported
    wal = db.with_name(db.name + "-wal")
    flag = "mode=ro" if wal.exists() else "immutable=1"
    try:
        return sqlite3.connect(f"{db.as_uri()}?{flag}", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        result.problems.append(f"the database {DB_NAME} cannot be opened ({exc}): restore it "
                               "from a backup")
        return None


def _check_database(conn: sqlite3.Connection, marker_version: int | None,
                    result: CheckResult) -> dict[str, int] | None:
    """Every table in one snapshot; return referenced blob -> size, or None when the
    database cannot be read far enough to know."""
    try:
        conn.execute("BEGIN")  # one consistent snapshot (WAL readers do not block writers)
        try:
            return _check_tables(conn, marker_version, result)
        finally:
            conn.execute("ROLLBACK")
    except sqlite3.Error as exc:  # "file is not a database", "malformed", "no such table", ...
        result.problems.append(f"the database {DB_NAME} cannot be read ({exc}): it is damaged; "
                               "restore it from a backup")
        return None
    except Exception as exc:  # a garbled page can give any value any type: report, never crash
        result.problems.append(f"the database {DB_NAME} holds rows of an impossible shape "
                               f"({type(exc).__name__}: {exc}): it is damaged; restore it from "
                               "a backup")
        return None


def _check_tables(conn, marker_version: int | None, result: CheckResult) -> dict[str, int] | None:
    integrity = conn.execute("PRAGMA integrity_check").fetchall()
    if integrity != [("ok",)]:
        result.problems += [f"sqlite: {row[0]}" for row in integrity]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if marker_version is not None and version != marker_version:
        result.problems.append(f"the database has format {version} but {MARKER} says "
                               f"{marker_version}")
    for table, columns in _TABLES.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not columns <= have:
            result.problems.append(f"table {table} is missing or lacks columns "
                                   f"{sorted(columns - have)}")
            return None
    owners = _check_entities(conn, result)
    _check_fields(conn, owners, result)
    return _check_artifacts(conn, owners, result)


def _check_entities(db, result: CheckResult) -> set[str]:
    rows = db.execute("SELECT id, kind, name, parent_id FROM entities").fetchall()
    ids = {row[0]: row[1] for row in rows}
    for id_, kind, name, parent in rows:
        if kind not in PARENT_KIND:
            result.problems.append(f"entity {id_!r} has an unknown kind {kind!r}")
            continue
        result.counts[kind] = result.counts.get(kind, 0) + 1
        want = PARENT_KIND[kind]
        if want is None and parent:
            result.problems.append(f"{kind} {name!r} ({id_}) has a parent but should not")
        elif want and ids.get(parent) != want:
            result.problems.append(f"{kind} {name!r} ({id_}) lost its parent {want} {parent!r}")
    for table in ("fields", "artifacts", "artifact_files"):
        for (owner,) in db.execute(f"SELECT DISTINCT owner_id FROM {table}"):
            if owner not in ids:
                result.problems.append(f"{table} belong to a missing owner {owner!r}")
    return set(ids)


def _check_fields(db, owners: set[str], result: CheckResult) -> None:
    for owner, field, key, value in db.execute("SELECT owner_id, field, key, value FROM fields"):
        if field not in FIELDS:
            result.problems.append(f"field row {field!r}/{key!r} of {owner} has an unknown field")
        elif not _is_json(value):
            result.problems.append(f"{field} {key!r} of {owner} holds a value that is not JSON")


def _check_artifacts(db, owners: set[str], result: CheckResult) -> dict[str, int]:
    """Check each artifact against its files; return every referenced blob -> size."""
    files: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
    for owner, key, rel, blob, size in db.execute(
            "SELECT owner_id, key, relpath, blob, size FROM artifact_files"):
        files.setdefault((owner, key), []).append((rel, blob, size))
    referenced: dict[str, int] = {}
    artifacts = db.execute("SELECT owner_id, key, type, size, digest, meta "
                           "FROM artifacts").fetchall()
    result.counts["artifacts"] = len(artifacts)
    for owner, key, type_, size, digest, meta in artifacts:
        entries = files.pop((owner, key), [])
        label = f"artifact {key!r} of {owner}"
        if type_ not in ARTIFACT_TYPES:
            result.problems.append(f"{label} has an unknown type {type_!r}")
        if not _is_json(meta):
            result.problems.append(f"{label}: its meta is not JSON")
        bad = rows_problem(type_, entries)
        if bad:
            result.problems.append(f"{label}: {bad}")
            continue
        got = rows_digest(type_, entries)
        if got != digest:
            result.problems.append(f"{label}: recorded digest {digest} but its files give {got}")
        if sum(e[2] for e in entries) != size:
            result.problems.append(f"{label}: recorded size {size} differs from its files")
        for _, blob, sz in entries:
            referenced[blob] = sz
    for owner, key in files:
        result.problems.append(f"files of artifact {key!r} of {owner} without the artifact")
    return referenced


def rows_problem(type_: str, entries: list[tuple[str, str, int]]) -> str | None:
    """What is wrong with an artifact's (relpath, blob, size) rows, None if nothing: every
    blob name a sha256, every size possible, every relpath of a tree safe, a file one row
    with no path. Shared by the check and by every fetch (rows are data)."""
    for rel, blob, size in entries:
        if not isinstance(blob, str) or not HEX.fullmatch(blob):
            return f"a file row names a blob {blob!r} that is not a sha256"
        if not isinstance(size, int) or size < 0:
            return f"a file row has an impossible size {size!r}"
        if type_ in ("directory", "model"):
            try:
                check_relpath(rel)
            except UnsafePath as exc:
                return (f"a file row records a path {exc} (it would be written outside the "
                        "fetch folder)")
    if type_ not in ("directory", "model") and (len(entries) != 1 or entries[0][0] != ""):
        return f"has {len(entries)} file rows where a {type_} has exactly one, with no path"
    return None


def rows_digest(type_: str, entries: list[tuple[str, str, int]]) -> str:
    """The digest well-formed rows give (see `rows_problem`): what the artifact must record."""
    if type_ in ("directory", "model"):
        return tree_digest((rel, "sha256:" + blob, size) for rel, blob, size in entries)
    return "sha256:" + entries[0][1]


def _check_blobs(blobs: BlobFiles, referenced: dict[str, int] | None, result: CheckResult,
                 verify: bool) -> None:
    present = set(blobs.all())
    result.counts["blobs"] = len(present)
    for stray in blobs.strays():
        kind = "a symbolic link" if stray.is_symlink() else "not a blob file"
        result.problems.append(f"{stray.relative_to(blobs.dir.parent).as_posix()} in blobs/ is "
                               f"{kind}: move it out")
    if referenced is None:  # the database is unreadable: at least say which blobs are sound
        for blob in sorted(present):
            if verify and (why := blobs.verify(blob)):
                result.problems.append(f"blob {blob}: {why}")
        return
    for blob, size in sorted(referenced.items()):
        if blob not in present:
            result.problems.append(f"blob {blob} is missing")
        elif verify and (why := blobs.verify(blob, size)):
            result.problems.append(f"blob {blob}: {why}")
        elif not verify and blobs.path(blob).stat().st_size != size:
            result.problems.append(f"blob {blob}: size {blobs.path(blob).stat().st_size} != {size}")
    unreferenced = present - set(referenced)
    if unreferenced:
        result.notes.append(f"{len(unreferenced)} blob(s) not referenced by any artifact "
                            "(left by interrupted writes; harmless)")
    strays = blobs.stray_temp_files()
    if strays:
        result.notes.append(f"{len(strays)} temporary file(s) in {blobs.tmp} "
                            "(left by interrupted writes; harmless)")


def _is_json(text) -> bool:
    try:
        json.loads(text)
    except (TypeError, ValueError):
        return False
    return True


def sweep_temp_files(blobs: BlobFiles, cutoff: float, removed: dict[str, int]) -> None:
    """Remove temporary files last modified before `cutoff` (a write in progress is newer)."""
    for path in blobs.stray_temp_files():
        _remove_if_old(path, cutoff, removed, "temp_files")


def sweep_unreferenced(conn: sqlite3.Connection, blobs: BlobFiles, cutoff: float,
                       removed: dict[str, int]) -> None:
    """Remove blobs no artifact row refers to, older than `cutoff`. Run inside a write
    transaction: `put_artifact` checks its blobs under the same lock before committing a
    reference (and writes them again if they vanished), so a blob is never deleted out from
    under an artifact."""
    referenced = {row[0] for row in conn.execute("SELECT DISTINCT blob FROM artifact_files")}
    for blob in list(blobs.all()):
        if blob not in referenced:
            _remove_if_old(blobs.path(blob), cutoff, removed, "blobs")


def _remove_if_old(path: Path, cutoff: float, removed: dict[str, int], what: str) -> None:
    try:
        stat = path.lstat()
        if stat.st_mtime < cutoff:
            path.unlink()
            removed[what] += 1
            removed["bytes"] += stat.st_size
    except FileNotFoundError:
        pass
