"""How `LocalStore` talks to SQLite: one connection per process, lock waits, and errors.

Every sqlite3 failure leaves here as a `StoreError` that names the store and says what to do:
"locked" after a patient wait, "read-only" with the remedy, anything else (a truncated or
garbled file, a dropped table) as possible damage pointing at `store check` and a backup.
"""
from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from ....errors import StoreError
from .folder import DB_NAME

LOCK_WAIT_SECONDS = 120.0  # total patience for "database is locked" before telling the user


def retry(attempt: Callable[[], Any], location: str) -> Any:
    """Run `attempt`, retrying while another process holds the lock; any other sqlite3 error,
    or a lock held too long, becomes a StoreError."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    delay = 0.005
    while True:
        try:
            return attempt()
        except sqlite3.DatabaseError as exc:  # every sqlite3 failure, not only locks
            if not is_lock_error(exc) or time.monotonic() > deadline:
                raise store_error(exc, location) from exc
        # back off with jitter so eight writers do not retry in lock step
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 0.25)


def connect(path: Path, read_only: bool) -> sqlite3.Connection:
    if read_only:
        # immutable: SQLite creates no -wal/-shm files, which a read-only folder cannot hold
        conn = sqlite3.connect(f"{path.as_uri()}?immutable=1", uri=True, isolation_level=None,
                               check_same_thread=False)
        return conn
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = OFF")
    return conn


def is_lock_error(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def store_error(exc: sqlite3.Error, location: str) -> StoreError:
    text = str(exc).lower()
    if "readonly" in text or "read-only" in text:
        return StoreError(f"the store folder {location} is read-only; make it writable "
                          "(chmod u+w) or log to another store")
    if is_lock_error(exc):
        return StoreError(f"the store {location} stayed locked by another process for "
                          f"{LOCK_WAIT_SECONDS:.0f} s; find the process holding it and retry")
    return StoreError(f"the store {location} failed: {exc} (sqlite3 {type(exc).__name__}); its "
                      "database may be damaged. Nothing was changed. Run `verta-jupyter store "
                      f"check --store {location}` and restore {DB_NAME} from a backup if it "
                      "reports damage")
