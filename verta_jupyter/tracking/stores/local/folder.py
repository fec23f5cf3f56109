"""The on-disk format of a `LocalStore`: folder, marker, schema, migrations.

See docs/store-format.md. The marker file names the format and its version; the database's
`PRAGMA user_version` holds the same number.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Callable

from ....errors import StoreError

FORMAT = "verta_jupyter.store"
FORMAT_VERSION = 1
MARKER = "VERTA_STORE.json"
DB_NAME = "metadata.sqlite3"


SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS entities (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    parent_id TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    UNIQUE (kind, parent_id, name)
);
CREATE INDEX IF NOT EXISTS entities_listing ON entities (kind, parent_id, seq);
CREATE INDEX IF NOT EXISTS entities_by_kind ON entities (kind, seq);
CREATE TABLE IF NOT EXISTS fields (
    owner_id TEXT NOT NULL, field TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (owner_id, field, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fields_by_key ON fields (field, key);
CREATE TABLE IF NOT EXISTS artifacts (
    owner_id TEXT NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL, filename TEXT NOT NULL,
    size INTEGER NOT NULL, digest TEXT NOT NULL, meta TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (owner_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS artifact_files (
    owner_id TEXT NOT NULL, key TEXT NOT NULL, relpath TEXT NOT NULL,
    blob TEXT NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (owner_id, key, relpath)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS artifact_files_by_blob ON artifact_files (blob);
"""

#: version -> function migrating a connection (inside a transaction) from that version to the
#: next. Empty while only format 1 exists; see docs/store-format.md for the procedure.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection, Path], None]] = {}


#: What a store folder may hold at its top level; anything else is reported by the check.
KNOWN_ENTRIES = {MARKER, DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal",
                 "blobs", "tmp", "cache"}


def open_folder(root: Path) -> bool:
    """Create or recognise the store folder; return True if it is read-only.

    A store is created complete (marker, database, folders) in one rename, so a folder that is
    marked as a store, or holds blobs or a database, is never initialised again: a missing or
    empty database there is damage, reported, and nothing is written."""
    marker = root / MARKER
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root} is a file, not a store folder; pass a folder path as store=")
    if not _present(marker):
        has_parts = (root / DB_NAME).exists() or (root / "blobs").exists()
        has_files = root.is_dir() and any(root.iterdir())
        # look again after listing: a racing creator's rename brings every part at once, so
        # parts without a marker *now* are damage, not a store appearing
        if has_parts and not _present(marker):
            raise damaged(root, f"its marker {MARKER} is missing although it holds a database "
                          "or blobs", f"restore {MARKER} from a backup")
        if has_files and not _present(marker):
            raise StoreError(f"{root} is not a verta_jupyter store (it has files but no {MARKER}); "
                             "pass an empty or new folder, or the folder of an existing store")
        if not _present(marker):
            _create_folder(root)
    _read_marker(marker)
    db = root / DB_NAME
    if db.is_symlink() or not db.is_file() or db.stat().st_size == 0:
        what = "is missing" if not db.exists() and not db.is_symlink() else (
            "is empty (zero bytes)" if db.is_file() and not db.is_symlink() else "is not a file")
        raise damaged(root, f"its database {DB_NAME} {what} although {MARKER} marks the folder "
                      "as a store", f"restore {DB_NAME} (with its -wal file, if any) from a "
                      "backup; if the store never held anything, delete the folder to start "
                      "afresh")
    read_only = not os.access(root, os.W_OK) or (db.exists() and not os.access(db, os.W_OK))
    for sub in ("blobs", "tmp"):
        folder = root / sub
        if (folder.exists() or folder.is_symlink()) and not folder.is_dir():  # a link to a
            # folder is fine: that is how a store's blobs are moved to a bigger disk
            raise damaged(root, f"{sub}/ is not a real folder", f"move {folder} aside and put "
                          f"back the {sub}/ folder from a backup")
        if not read_only:
            folder.mkdir(exist_ok=True)
    return read_only


def _present(path: Path) -> bool:
    return path.is_file() or path.is_symlink()


def _create_folder(root: Path) -> None:
    """Make a store folder in one rename, so processes racing to create the same store all
    see either nothing or a complete folder (and exactly one of them wins)."""
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        # not mkdtemp: its 0700 mode would make a store others in the group cannot read
        staging = root.parent / f".{root.name}-creating-{uuid.uuid4().hex[:12]}"
        staging.mkdir()
    except OSError as exc:  # EACCES, EROFS, ENOSPC, ...
        raise StoreError(f"cannot create a store at {root} ({exc.strerror or exc}); choose a "
                         "writable folder with store=PATH") from exc
    try:
        for sub in ("blobs", "tmp"):
            (staging / sub).mkdir()
        create_database(staging / DB_NAME)
        write_marker(staging / MARKER)
        _rename_onto(staging, root)
    except OSError:
        if not (root / MARKER).is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _rename_onto(staging: Path, root: Path) -> None:
    """Rename `staging` to `root`, which may be an empty folder. POSIX rename replaces an empty
    folder in one step; Windows refuses any existing target, so there the empty folder is
    removed first (a racing creator then wins the rename, and we see its marker)."""
    try:
        os.rename(staging, root)
    except OSError:
        if not root.is_dir() or root.is_symlink() or any(root.iterdir()):
            raise  # another process's store, or not ours to replace
        root.rmdir()
        os.rename(staging, root)


def damaged(root: Path, what: str, remedy: str) -> StoreError:
    """The one shape of every "this store is damaged" message: where, what, what to do."""
    return StoreError(f"the store {root} is damaged: {what}. Nothing was changed. "
                      f"{remedy[0].upper()}{remedy[1:]}, then run `verta-jupyter store check "
                      f"--store {root}`")


def create_database(path: Path) -> None:
    """A new, complete database at `path`: schema version 1, then every migration, so a new
    store climbs the same path an old one does."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")  # recorded in the file header
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA_V1.split(";"):
            if statement.strip():
                conn.execute(statement)
        migrate(conn, path.parent, 1)
        conn.execute("COMMIT")
    finally:
        conn.close()  # checkpoints the WAL into the file: the folder is complete when renamed


def migrate(conn: sqlite3.Connection, root: Path, current: int) -> None:
    """Run the migrations from version `current` up (inside the caller's transaction)."""
    while current < FORMAT_VERSION:
        MIGRATIONS[current](conn, root)
        current += 1
    conn.execute(f"PRAGMA user_version = {current}")


def _read_marker(marker: Path) -> dict:
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError) as exc:
        raise damaged(marker.parent, f"its marker {marker.name} is unreadable or not JSON",
                      f"restore {marker.name} from a backup (it holds "
                      f'{{"format": "{FORMAT}", "version": {FORMAT_VERSION}}})') from exc
    if not isinstance(data, dict):
        data = {"content": data}
    if data.get("format") != FORMAT or not isinstance(data.get("version"), int):
        raise StoreError(f"{marker.parent} is not a verta_jupyter store ({marker.name} says "
                         f"{data!r}); pass the folder of a verta_jupyter store")
    return data


def write_marker(marker: Path) -> None:
    tmp = marker.with_name(f".marker-{uuid.uuid4().hex[:12]}")  # default mode, unlike mkstemp
    with open(tmp, "x") as f:
        f.write(json.dumps({"format": FORMAT, "version": FORMAT_VERSION}) + "\n")
    os.replace(tmp, marker)
