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


def open_folder(root: Path) -> bool:
    """Create or recognise the store folder; return True if it is read-only."""
    marker = root / MARKER
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root} is a file, not a store folder; pass a folder path as store=")
    if not marker.is_file():
        if root.is_dir() and any(root.iterdir()):
            raise StoreError(f"{root} is not a verta_jupyter store (it has files but no {MARKER}); "
                             "pass an empty or new folder, or the folder of an existing store")
        _create_folder(root)
    _read_marker(marker)
    db = root / DB_NAME
    read_only = not os.access(root, os.W_OK) or (db.exists() and not os.access(db, os.W_OK))
    if not read_only:
        for sub in ("blobs", "tmp"):
            (root / sub).mkdir(exist_ok=True)
    return read_only


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
        write_marker(staging / MARKER)
        os.rename(staging, root)  # replaces an empty folder; fails if another process won
    except OSError:
        if not (root / MARKER).is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_marker(marker: Path) -> dict:
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{marker} is unreadable or not JSON; restore it from a backup") from exc
    if data.get("format") != FORMAT or not isinstance(data.get("version"), int):
        raise StoreError(f"{marker.parent} is not a verta_jupyter store ({marker.name} says "
                         f"{data!r}); pass the folder of a verta_jupyter store")
    return data


def write_marker(marker: Path) -> None:
    tmp = marker.with_name(f".marker-{uuid.uuid4().hex[:12]}")  # default mode, unlike mkstemp
    with open(tmp, "x") as f:
        f.write(json.dumps({"format": FORMAT, "version": FORMAT_VERSION}) + "\n")
    os.replace(tmp, marker)
