"""`LocalStore`: the embedded store — one SQLite file (WAL) plus content-addressed blob files.

On-disk format (documented in docs/store-format.md; `folder.py` holds the schema, the
version, and the migrations; `check.py` the integrity check; `connection.py` SQLite)::

    verta_store/
      VERTA_STORE.json     {"format": "verta_jupyter.store", "version": 1}  (marks the folder)
      metadata.sqlite3     entities, fields, artifacts, artifact_files (+ -wal/-shm while open)
      blobs/ab/ab12...     file contents named by sha256
      tmp/                 in-flight writes (stray files here after a crash are harmless)

Crash safety: blobs are complete before the one transaction that makes an artifact visible.
Concurrency: WAL lets readers run while one process writes; writers take the lock up front
(BEGIN IMMEDIATE), wait via busy_timeout, and retry "database is locked" themselves; with
overwrite=False "is the key free?" and "record it" are one transaction, so of two racing
writers exactly one wins.
Trust: rows are data. A relpath or blob name read back is checked before anything is written,
a fetched tree must match the digest recorded for it, and a damaged database is a `StoreError`
naming the store, never a raw sqlite3 traceback.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

from ....errors import AlreadyExistsError, NotFoundError, StoreError
from ....package.paths import UnsafePath, check_relpath, safe_target
from ..base import (ARTIFACT_TYPES, MODEL_KEY, OWNER_KINDS, PARENT_KIND, ArtifactInfo,
                    CheckResult, Entity, Progress, check_field, check_kind, iter_tree)
from .blobs import BlobFiles
from .check import check_folder, rows_digest, rows_problem, sweep_temp_files, sweep_unreferenced
from .connection import connect, retry, store_error
from .folder import DB_NAME, FORMAT_VERSION, MARKER, damaged, migrate, open_folder, write_marker

class LocalStore:
    """The embedded store in a folder. `LocalStore(path)` creates the folder if it is absent
    or empty, opens it if it is a store, and refuses anything else."""

    def __init__(self, path: str | os.PathLike):
        self.root = Path(path).expanduser().resolve()
        self.location = str(self.root)
        self.read_only = open_folder(self.root)
        self.blobs = BlobFiles(self.root)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._init_db()

    def __repr__(self) -> str:
        return f"LocalStore({self.location!r})"

    # -- connection ------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # a forked child needs its own
            try:
                self._conn = connect(self.root / DB_NAME, self.read_only)
            except sqlite3.DatabaseError as exc:  # "file is not a database", ...
                raise store_error(exc, self.location) from exc
            self._pid = os.getpid()
        return self._conn

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._retry(lambda: self._db().execute(sql, args).fetchall())

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `fn` in one IMMEDIATE transaction, retrying while another process holds the lock."""
        if self.read_only:
            raise StoreError(f"the store folder {self.location} is read-only; make it writable "
                             "(chmod u+w) or log to another store")

        def attempt():
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
                return result
            except BaseException:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:  # a damaged file may refuse even this; report the cause
                        pass
                raise

        with self._lock:
            return self._retry(attempt)

    def _retry(self, attempt: Callable[[], Any]) -> Any:
        return retry(attempt, self.location)

    def _init_db(self) -> None:
        version = self._read("PRAGMA user_version")[0][0]
        if version > FORMAT_VERSION:
            raise StoreError(f"the store {self.location} has format {version}, newer than this "
                             f"verta_jupyter understands ({FORMAT_VERSION}); upgrade verta_jupyter")
        if version == FORMAT_VERSION:
            self._ensure_wal()
            return
        if version < 1:  # a new store is created complete, so this is an emptied database
            raise damaged(self.root, f"its database {DB_NAME} has no format version (an empty "
                          "or replaced database)", f"restore {DB_NAME} (with its -wal file, if "
                          "any) from a backup")
        if self.read_only:
            raise StoreError(f"the store {self.location} has format {version} and needs migrating "
                             f"to {FORMAT_VERSION}; open it once from a writable location")
        self._ensure_wal()
        self._write(lambda conn: migrate(conn, self.root,
                                         conn.execute("PRAGMA user_version").fetchone()[0]))
        write_marker(self.root / MARKER)

    def _ensure_wal(self) -> None:
        """WAL mode (stores are created in it; this is for one copied without it), set only
        once the file is known to be our database: setting it rewrites the header."""
        if not self.read_only and self._read("PRAGMA journal_mode")[0][0] != "wal":
            self._read("PRAGMA journal_mode = WAL")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- entities --------------------------------------------------------------------------
    def get_or_create(self, kind: str, name: str | None, parent_id: str | None = None) -> Entity:
        check_kind(kind)
        parent = parent_id or ""
        if PARENT_KIND[kind] and not parent:
            raise StoreError(f"a {kind} needs a parent {PARENT_KIND[kind]}")
        if name is not None:
            found = self._read("SELECT id, name, parent_id, created_at FROM entities "
                               "WHERE kind=? AND parent_id=? AND name=?", (kind, parent, name))
            if found:
                return _entity(kind, found[0])

        def insert(conn: sqlite3.Connection) -> tuple:
            if parent and not conn.execute("SELECT 1 FROM entities WHERE id=? AND kind=?",
                                           (parent, PARENT_KIND[kind])).fetchone():
                raise NotFoundError(f"no {PARENT_KIND[kind]} with id {parent!r} in {self.location}")
            new_id = uuid.uuid4().hex
            chosen = name if name is not None else _generated_name(conn, kind, parent, new_id)
            conn.execute("INSERT OR IGNORE INTO entities (id, kind, name, parent_id, created_at) "
                         "VALUES (?, ?, ?, ?, ?)", (new_id, kind, chosen, parent, time.time()))
            return conn.execute("SELECT id, name, parent_id, created_at FROM entities "
                                "WHERE kind=? AND parent_id=? AND name=?",
                                (kind, parent, chosen)).fetchone()

        return _entity(kind, self._write(insert))

    def get(self, kind: str, id: str) -> Entity:
        check_kind(kind)
        rows = self._read("SELECT id, name, parent_id, created_at FROM entities "
                          "WHERE id=? AND kind=?", (str(id), kind))
        if not rows:
            raise NotFoundError(f"no {kind.replace('_', ' ')} with id {id!r} in {self.location}; "
                                "check the id (list them with `verta-jupyter runs list`)")
        return _entity(kind, rows[0])

    def find(self, kind: str, *, parent_id: str | None = None, ancestor_id: str | None = None,
             name: str | None = None, tag: str | None = None) -> list[Entity]:
        check_kind(kind)
        sql = "SELECT ?, id, name, NULLIF(parent_id, ''), created_at FROM entities e WHERE kind=?"
        args: list = [kind, kind]
        if parent_id is not None:
            sql += " AND parent_id=?"
            args.append(parent_id)
        if ancestor_id is not None:
            sql += " AND parent_id IN (SELECT id FROM entities WHERE parent_id=?)"
            args.append(ancestor_id)
        if name is not None:
            sql += " AND name=?"
            args.append(name)
        if tag is not None:
            sql += (" AND EXISTS (SELECT 1 FROM fields f WHERE f.owner_id=e.id "
                    "AND f.field='tags' AND f.key=?)")
            args.append(tag)
        return list(map(Entity._make, self._read(sql + " ORDER BY seq", tuple(args))))

    # -- fields ----------------------------------------------------------------------------
    def put_fields(self, kind: str, id: str, field: str, values: Mapping[str, Any],
                   overwrite: bool = True) -> None:
        """See `Store.put_fields`. With `overwrite=False` "are the keys free?" and the write are
        one IMMEDIATE transaction, so of racing writers of a key exactly one succeeds."""
        check_field(field)
        rows = [(id, field, str(k), json.dumps(v)) for k, v in values.items()]

        def put(conn: sqlite3.Connection) -> None:
            self._require_owner(conn, kind, id)
            if not overwrite:
                # (read the field's keys, not "key IN (?, ...)": old SQLite caps parameters at 999)
                logged = {k for (k,) in conn.execute(
                    "SELECT key FROM fields WHERE owner_id=? AND field=?", (id, field))}
                taken = sorted(logged.intersection(r[2] for r in rows))
                if taken:
                    raise self._fields_taken(kind, id, field, taken)
            conn.executemany("INSERT OR REPLACE INTO fields VALUES (?, ?, ?, ?)", rows)

        self._write(put)

    def _fields_taken(self, kind: str, id: str, field: str, keys: list[str]) -> AlreadyExistsError:
        what = field[:-1]  # "metrics" -> "metric"
        return AlreadyExistsError(f"{what} {', '.join(map(repr, keys))} is already logged on "
                                  f"{kind.replace('_', ' ')} {id} in {self.location} (perhaps by "
                                  "another process a moment ago); nothing was written. Pass "
                                  "overwrite=True to replace it")

    def get_fields(self, kind: str, id: str, field: str) -> dict[str, Any]:
        check_field(field)
        self.get(kind, id)
        rows = self._read("SELECT key, value FROM fields WHERE owner_id=? AND field=? "
                          "ORDER BY key", (id, field))
        return {key: json.loads(value) for key, value in rows}

    # -- artifacts -------------------------------------------------------------------------
    def put_artifact(self, kind: str, id: str, key: str, path: Path, *, type: str,
                     meta: Mapping[str, Any] | None = None,
                     progress: Progress | None = None, overwrite: bool = True) -> ArtifactInfo:
        """See `Store.put_artifact`. With `overwrite=False` the key must be free when the
        record is written (checked in the same transaction): AlreadyExistsError otherwise,
        and nothing is replaced."""
        if type not in ARTIFACT_TYPES:
            raise StoreError(f"unknown artifact type {type!r}; use one of {ARTIFACT_TYPES}")
        path = Path(path)
        self.get(kind, id)  # fail before writing any blob
        if self.read_only:
            self._write(lambda conn: None)  # raises the read-only error
        if not overwrite and self._read("SELECT 1 FROM artifacts WHERE owner_id=? AND key=?",
                                        (id, key)):
            raise self._taken(kind, id, key)  # early, before any blob is written
        for attempt in (1, 2):
            files = self._put_blobs(key, path, progress)
            try:
                return self._record_artifact(kind, id, key, path.name, type, meta, files,
                                             overwrite)
            except _BlobsVanished:
                if attempt == 2:  # pragma: no cover - a second gc in the same instant
                    raise StoreError(f"blobs of artifact {key!r} keep vanishing from "
                                     f"{self.location}; is a garbage collection running?")
        raise AssertionError("unreachable")

    def _record_artifact(self, kind: str, id: str, key: str, filename: str, type: str,
                         meta: Mapping[str, Any] | None, files: list[tuple[str, str, int]],
                         overwrite: bool) -> ArtifactInfo:
        digest = rows_digest(type, files)
        info = ArtifactInfo(key=key, type=type, filename=filename,
                            size=sum(f[2] for f in files), digest=digest, meta=dict(meta or {}))

        def record(conn: sqlite3.Connection) -> None:
            self._require_owner(conn, kind, id)
            # under the write lock, which garbage collection also holds: a blob seen here
            # stays until this transaction has committed its reference
            if not all(self.blobs.exists(hx) for _, hx, _ in files):
                raise _BlobsVanished()
            # the check and the record in one IMMEDIATE transaction: the overwrite guarantee
            if not overwrite and conn.execute("SELECT 1 FROM artifacts WHERE owner_id=? AND "
                                              "key=?", (id, key)).fetchone():
                raise self._taken(kind, id, key)
            conn.execute("DELETE FROM artifact_files WHERE owner_id=? AND key=?", (id, key))
            verb = "INSERT OR REPLACE" if overwrite else "INSERT"
            conn.execute(f"{verb} INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (id, key, type, info.filename, info.size, digest,
                          json.dumps(info.meta), time.time()))
            conn.executemany("INSERT INTO artifact_files VALUES (?, ?, ?, ?, ?)",
                             [(id, key, rel, hx, size) for rel, hx, size in files])

        self._write(record)
        return info

    def _taken(self, kind: str, id: str, key: str) -> AlreadyExistsError:
        what = "a model" if key == MODEL_KEY else f"artifact {key!r}"
        return AlreadyExistsError(f"{what} is already logged on {kind.replace('_', ' ')} {id} in "
                                  f"{self.location} (perhaps by another process a moment ago); "
                                  "nothing was replaced. Pass overwrite=True to replace it")

    def _put_blobs(self, key: str, path: Path,
                   progress: Progress | None) -> list[tuple[str, str, int]]:
        if path.is_dir():
            tree = list(iter_tree(path))
            for rel, _ in tree:  # record only names every platform can fetch back safely
                try:
                    check_relpath(rel)
                except UnsafePath as exc:
                    raise StoreError(f"artifact {key!r}: the file {path / rel} cannot be stored: "
                                     f"its name {exc.why}; rename it") from None
            stored = self.blobs.put_many([p for _, p in tree], progress)
            return [(rel, *blob) for (rel, _), blob in zip(tree, stored)]
        if path.is_file():
            return [("", *self.blobs.put(path, progress))]
        raise NotFoundError(f"no file or directory at {path}; check the path")

    def artifact_info(self, kind: str, id: str, key: str) -> ArtifactInfo:
        rows = self._read("SELECT key, type, filename, size, digest, meta FROM artifacts "
                          "WHERE owner_id=? AND key=?", (id, key))
        if not rows:
            self.get(kind, id)
            raise NotFoundError(f"no artifact {key!r} in {kind} {id}; log it first with "
                                f"log_artifact({key!r}, ...)")
        return _artifact(rows[0])

    def list_artifacts(self, kind: str, id: str) -> list[ArtifactInfo]:
        self.get(kind, id)
        rows = self._read("SELECT key, type, filename, size, digest, meta FROM artifacts "
                          "WHERE owner_id=? ORDER BY key", (id,))
        return [_artifact(row) for row in rows]

    def fetch_artifact(self, kind: str, id: str, key: str, dest: Path, *,
                       progress: Progress | None = None) -> Path:
        info = self.artifact_info(kind, id, key)
        rows = self._read("SELECT relpath, blob, size FROM artifact_files WHERE owner_id=? AND "
                          "key=? ORDER BY relpath", (id, key))
        files = self._checked_files(kind, id, info, rows)  # before anything is written
        dest = Path(dest)
        if dest.exists() or dest.is_symlink():
            raise StoreError(f"{dest} already exists; fetch into a new path")
        try:
            if info.type in ("directory", "model"):
                dest.mkdir(parents=True)
                for rel, blob in files:
                    self.blobs.copy_out(blob, safe_target(dest, rel), progress)
            else:
                self.blobs.copy_out(files[0][1], dest, progress)
        except UnsafePath as exc:  # a link or file planted in dest while we wrote
            _remove(dest)
            raise StoreError(f"fetching artifact {key!r} into {dest}: {exc}; nothing was kept. "
                             "Fetch into a new folder nobody else writes to") from exc
        except BaseException:
            _remove(dest)
            raise
        return dest

    def _checked_files(self, kind: str, id: str, info: ArtifactInfo,
                       rows: list[tuple]) -> list[tuple[str, str]]:
        """The (relpath, blob) rows of an artifact, refused unless every relpath is a safe
        relative path, every blob name a sha256, and together they give the recorded digest
        and size: rows are data, and data can be damaged or forged."""
        def refuse(why: str) -> StoreError:
            return StoreError(f"artifact {info.key!r} of {kind.replace('_', ' ')} {id} in "
                              f"{self.location}: {why}; refusing to fetch it (nothing was "
                              "written). The store's database is damaged or was tampered "
                              "with: run `verta-jupyter store check`")

        why = rows_problem(info.type, rows)
        if why:
            raise refuse(why)
        if rows_digest(info.type, rows) != info.digest or sum(r[2] for r in rows) != info.size:
            raise refuse(f"its file records do not give its recorded digest {info.digest}")
        return [(rel, blob) for rel, blob, _ in rows]

    def copy_artifacts(self, src_kind: str, src_id: str, dst_kind: str, dst_id: str,
                       extra_meta: Mapping[str, Any] | None = None) -> None:
        """Give `dst` every artifact of `src` in one transaction, sharing the blobs (optional
        fast path beyond the protocol: the registry uses it when a store has it)."""
        def copy(conn: sqlite3.Connection) -> None:
            self._require_owner(conn, src_kind, src_id)
            self._require_owner(conn, dst_kind, dst_id)
            rows = conn.execute("SELECT key, type, filename, size, digest, meta FROM artifacts "
                                "WHERE owner_id=?", (src_id,)).fetchall()
            for key, type_, filename, size, digest, meta in rows:
                merged = json.dumps({**json.loads(meta), **(extra_meta or {})})
                conn.execute("DELETE FROM artifact_files WHERE owner_id=? AND key=?", (dst_id, key))
                conn.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (dst_id, key, type_, filename, size, digest, merged, time.time()))
                conn.execute("INSERT INTO artifact_files SELECT ?, key, relpath, blob, size "
                             "FROM artifact_files WHERE owner_id=? AND key=?", (dst_id, src_id, key))

        self._write(copy)

    # -- maintenance -----------------------------------------------------------------------
    def check(self, verify_blobs: bool = True) -> CheckResult:
        """Integrity check (see `check.check_folder`); read-only, reports damage, never raises
        for it."""
        with self._lock:
            try:
                conn = self._db()
            except StoreError:
                conn = None  # the check opens the file itself and says what is wrong with it
            return check_folder(self.root, conn=conn, verify_blobs=verify_blobs)

    @staticmethod
    def check_path(path: str | os.PathLike, verify_blobs: bool = True) -> CheckResult:
        """Check the store folder at `path` without opening it as a store (which refuses a
        damaged one): what `verta-jupyter store check` runs. Writes nothing."""
        return check_folder(Path(path).expanduser().resolve(), verify_blobs=verify_blobs)

    def collect_garbage(self, min_age: float = 3600.0, verify_blobs: bool = True) -> dict[str, int]:
        """Delete temporary files and unreferenced blobs older than `min_age` seconds (what
        interrupted writes leave); return what was removed. Refused (StoreError) on a store
        that fails its check: a damaged database may have lost the rows that keep blobs."""
        result = self.check(verify_blobs=verify_blobs)
        if not result.ok:
            raise StoreError(f"the store {self.location} fails its check ({len(result.problems)} "
                             f"problem(s), first: {result.problems[0]}); garbage collection "
                             "refuses to run on a damaged store, so no blob is deleted. Run "
                             f"`verta-jupyter store check --store {self.location}` and restore "
                             "the store from a backup")
        cutoff = time.time() - min_age
        removed = {"temp_files": 0, "blobs": 0, "bytes": 0}
        sweep_temp_files(self.blobs, cutoff, removed)
        # under the write lock, which put_artifact holds while it checks its blobs exist
        self._write(lambda conn: sweep_unreferenced(conn, self.blobs, cutoff, removed))
        return removed

    def _require_owner(self, conn: sqlite3.Connection, kind: str, id: str) -> None:
        if kind not in OWNER_KINDS:
            raise StoreError(f"a {kind} has no fields or artifacts; use a run or a model version")
        if not conn.execute("SELECT 1 FROM entities WHERE id=? AND kind=?", (id, kind)).fetchone():
            raise NotFoundError(f"no {kind.replace('_', ' ')} with id {id!r} in {self.location}")


def _generated_name(conn: sqlite3.Connection, kind: str, parent: str, new_id: str) -> str:
    if kind != "model_version":
        return f"{kind.replace('_', '-')}-{new_id[:8]}"
    n = conn.execute("SELECT COUNT(*) FROM entities WHERE kind=? AND parent_id=?",
                     (kind, parent)).fetchone()[0] + 1
    while conn.execute("SELECT 1 FROM entities WHERE kind=? AND parent_id=? AND name=?",
                       (kind, parent, str(n))).fetchone():
        n += 1
    return str(n)


def _entity(kind: str, row: tuple) -> Entity:
    id_, name, parent, created = row
    return Entity(kind=kind, id=id_, name=name, parent_id=parent or None, created_at=created)


def _artifact(row: tuple) -> ArtifactInfo:
    key, type_, filename, size, digest, meta = row
    return ArtifactInfo(key=key, type=type_, filename=filename, size=size, digest=digest,
                        meta=json.loads(meta))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class _BlobsVanished(Exception):
    """A blob was garbage-collected between being written and being referenced: put again."""
