"""`store check` against a real store damaged in 40 distinct ways: the check never crashes, reports
each damage as a problem, writes nothing, and `store gc` refuses to run on the damaged store.

One pristine store (runs, fields, file / directory / object / model artifacts) is built once and
copied for each damage, so every case starts from the same bytes.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Callable

import pytest

from verta_jupyter import cli
from verta_jupyter.errors import StoreError
from verta_jupyter.tracking.stores.base import tree_digest
from verta_jupyter.tracking.stores.local.store import DB_NAME, MARKER, LocalStore


def snapshot(root: Path) -> dict[str, bytes]:
    found = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            found[rel] = b"->" + os.readlink(p).encode()
        elif p.is_file():
            found[rel] = p.read_bytes()
        else:
            found[rel] = b"<dir>"
    return found


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("pristine")
    store = LocalStore(base / "store")
    project = store.get_or_create("project", "p")
    experiment = store.get_or_create("experiment", "e", project.id)
    runs = [store.get_or_create("run", name, experiment.id) for name in ("r1", "r2")]
    store.put_fields("run", runs[0].id, "metrics", {"acc": 0.5, "loss": 1.25})
    store.put_fields("run", runs[0].id, "tags", {"blue": None})
    (base / "f.txt").write_bytes(b"a file artifact\n" * 100)
    store.put_artifact("run", runs[0].id, "f", base / "f.txt", type="file")
    (base / "obj.pkl").write_bytes(b"\x80\x04K\x01.")
    store.put_artifact("run", runs[1].id, "o", base / "obj.pkl", type="object")
    tree = base / "tree"
    (tree / "sub").mkdir(parents=True)
    for rel, text in {"a.txt": "alpha", "b.txt": "beta", "sub/c.txt": "gamma"}.items():
        (tree / rel).write_text(text * 50)
    store.put_artifact("run", runs[0].id, "d", tree, type="directory")
    package = base / "package"
    package.mkdir()
    (package / "model.py").write_text("class M:\n    pass\n")
    (package / "verta_model.json").write_text("{}")
    store.put_artifact("run", runs[1].id, "_verta_model", package, type="model")
    assert store.check().ok
    store.close()
    assert not (base / "store" / f"{DB_NAME}-wal").exists()  # closed: one file holds it all
    return base / "store"


# -- the damages ---------------------------------------------------------------------------------
def _db(root: Path) -> Path:
    return root / DB_NAME


def _page(root: Path) -> int:
    return int.from_bytes(_db(root).read_bytes()[16:18], "big")


def truncate(fraction: float | None = None, size: int | None = None):
    def damage(root: Path) -> None:
        data = _db(root).read_bytes()
        keep = size if size is not None else int(len(data) * fraction)
        _db(root).write_bytes(data[:keep])
    return damage


def flip_page_byte(page_no: int, offset: int = 0):
    """Flip one byte of page `page_no` (1-based; negative counts from the end)."""
    def damage(root: Path) -> None:
        data = bytearray(_db(root).read_bytes())
        size = _page(root)
        pages = len(data) // size
        index = (page_no - 1 if page_no > 0 else pages + page_no) * size + offset
        data[index] ^= 0xFF
        _db(root).write_bytes(bytes(data))
    return damage


def zero_page(page_no: int):
    def damage(root: Path) -> None:
        data = bytearray(_db(root).read_bytes())
        size = _page(root)
        data[(page_no - 1) * size: page_no * size] = bytes(size)
        _db(root).write_bytes(bytes(data))
    return damage


def run_sql(*statements: str):
    def damage(root: Path) -> None:
        db = sqlite3.connect(_db(root))
        for statement in statements:
            db.execute(statement)
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
    return damage


def forge_relpath(new: str):
    """Rewrite one file row of the directory artifact, and its digest to match."""
    def damage(root: Path) -> None:
        db = sqlite3.connect(_db(root))
        db.execute("UPDATE artifact_files SET relpath=? WHERE key='d' AND relpath='sub/c.txt'",
                   (new,))
        rows = db.execute("SELECT relpath, blob, size FROM artifact_files WHERE key='d'").fetchall()
        digest = tree_digest((r, "sha256:" + b, s) for r, b, s in rows)
        db.execute("UPDATE artifacts SET digest=? WHERE key='d'", (digest,))
        db.commit()
        db.close()
    return damage


def _a_blob(root: Path, key: str = "f") -> Path:
    db = sqlite3.connect(f"{_db(root).as_uri()}?immutable=1", uri=True)
    blob = db.execute("SELECT blob FROM artifact_files WHERE key=?", (key,)).fetchone()[0]
    db.close()
    return root / "blobs" / blob[:2] / blob


def blob_damage(how: str):
    def damage(root: Path) -> None:
        blob = _a_blob(root)
        data = bytearray(blob.read_bytes())
        if how == "flip":
            data[len(data) // 2] ^= 0x01
            blob.write_bytes(bytes(data))
        elif how == "truncate":
            blob.write_bytes(bytes(data[:10]))
        elif how == "empty":
            blob.write_bytes(b"")
        elif how == "append":
            blob.write_bytes(bytes(data) + b"x")
        elif how == "remove":
            blob.unlink()
        elif how == "symlink":  # same bytes, but a link: its target could change under us
            copy = root.parent / "outside-copy"
            copy.write_bytes(bytes(data))
            blob.unlink()
            blob.symlink_to(copy)
        elif how == "directory":
            blob.unlink()
            blob.mkdir()
        elif how == "misplaced":  # right name, wrong folder
            other = root / "blobs" / ("00" if blob.parent.name != "00" else "01")
            other.mkdir(exist_ok=True)
            blob.rename(other / blob.name)
    return damage


def marker_damage(how: str):
    def damage(root: Path) -> None:
        marker = root / MARKER
        if how == "remove":
            marker.unlink()
        elif how == "garble":
            marker.write_text("{not json")
        elif how == "format":
            marker.write_text(json.dumps({"format": "something.else", "version": 1}))
        elif how == "version":
            marker.write_text(json.dumps({"format": "verta_jupyter.store", "version": 7}))
        elif how == "list":
            marker.write_text("[1, 2]")
    return damage


def stray(where: str):
    def damage(root: Path) -> None:
        if where == "root":
            (root / "notes.txt").write_text("mine")
        elif where == "blobs":
            (root / "blobs" / "README").write_text("?")
        elif where == "blob-folder":
            folder = next(p for p in (root / "blobs").iterdir())
            (folder / "not-a-hash").write_text("?")
        elif where == "blobs-dir":
            (root / "blobs" / "zz").mkdir()
    return damage


def replace_tmp_with_file(root: Path) -> None:
    shutil.rmtree(root / "tmp")
    (root / "tmp").write_text("not a folder")


def replace_db_with_directory(root: Path) -> None:
    _db(root).unlink()
    _db(root).mkdir()


def remove_db(root: Path) -> None:
    _db(root).unlink()


DAMAGES: dict[str, Callable[[Path], None]] = {
    "db-zero-length": truncate(size=0),
    "db-truncated-50-bytes": truncate(size=50),
    "db-truncated-header-page": truncate(size=4096 + 17),
    "db-truncated-half": truncate(fraction=0.5),
    "db-truncated-last-page": truncate(fraction=0.9),
    "db-missing": remove_db,
    "db-is-a-directory": replace_db_with_directory,
    "db-header-magic-flipped": flip_page_byte(1, 0),
    "db-page-size-flipped": flip_page_byte(1, 16),
    "db-page-2-header-flipped": flip_page_byte(2, 0),
    "db-page-3-header-flipped": flip_page_byte(3, 0),
    "db-last-page-header-flipped": flip_page_byte(-1, 0),
    "db-page-2-cell-pointer-flipped": flip_page_byte(2, 8),
    "db-page-2-zeroed": zero_page(2),
    "db-schema-page-zeroed-tail": flip_page_byte(1, 100),
    "row-deleted-artifact-file": run_sql("DELETE FROM artifact_files WHERE key='d' AND relpath='a.txt'"),
    "row-deleted-artifact": run_sql("DELETE FROM artifacts WHERE key='f'"),
    "row-deleted-run": run_sql("DELETE FROM entities WHERE name='r1'"),
    "row-deleted-experiment": run_sql("DELETE FROM entities WHERE kind='experiment'"),
    "row-deleted-all-files-of-file": run_sql("DELETE FROM artifact_files WHERE key='f'"),
    "row-added-bogus-file": run_sql(
        "INSERT INTO artifact_files SELECT owner_id, key, 'extra.txt', blob, size "
        "FROM artifact_files WHERE key='d' AND relpath='a.txt'"),
    "row-added-artifact-missing-blob": run_sql(
        "INSERT INTO artifacts SELECT owner_id, 'ghost', 'file', 'g', 3, 'sha256:' || "
        "'ab' || substr(digest, 10), '{}', 0 FROM artifacts WHERE key='f'",
        "INSERT INTO artifact_files SELECT owner_id, 'ghost', '', 'ab' || substr(digest, 10), 3 "
        "FROM artifacts WHERE key='f'"),
    "row-added-unknown-kind": run_sql(
        "INSERT INTO entities (id, kind, name, parent_id, created_at) "
        "VALUES ('x1', 'spaceship', 'n', '', 0)"),
    "row-added-orphan-field": run_sql("INSERT INTO fields VALUES ('nobody', 'metrics', 'k', '1')"),
    "row-field-not-json": run_sql("UPDATE fields SET value='{broken' WHERE key='acc'"),
    "row-field-unknown": run_sql("UPDATE fields SET field='secrets' WHERE key='acc'"),
    "row-meta-not-json": run_sql("UPDATE artifacts SET meta='nope' WHERE key='f'"),
    "row-unknown-artifact-type": run_sql("UPDATE artifacts SET type='rocket' WHERE key='o'"),
    "row-file-with-two-files": run_sql(
        "INSERT INTO artifact_files SELECT owner_id, key, 'second', blob, size "
        "FROM artifact_files WHERE key='f'"),
    "row-size-changed": run_sql("UPDATE artifacts SET size=size+1 WHERE key='f'"),
    "row-digest-changed": run_sql("UPDATE artifacts SET digest='sha256:' || "
                                  "substr('0000000000', 1, 10) || substr(digest, 18) WHERE key='d'"),
    "row-blob-name-is-a-path": run_sql("UPDATE artifact_files SET blob='../../../etc/passwd' "
                                       "WHERE key='f'"),
    "row-negative-size": run_sql("UPDATE artifact_files SET size=-5 WHERE key='o'"),
    "relpath-dotdot": forge_relpath("../../x"),
    "relpath-absolute": forge_relpath("/tmp/x"),
    "relpath-windows-drive": forge_relpath("C:\\x"),
    "relpath-windows-unc": forge_relpath("\\\\server\\share\\x"),
    "relpath-inner-dotdot": forge_relpath("sub/../../x"),
    "schema-table-dropped": run_sql("DROP TABLE fields"),
    "schema-user-version-zero": run_sql("PRAGMA user_version = 0"),
    "schema-user-version-newer": run_sql("PRAGMA user_version = 9"),
    "blob-byte-flipped": blob_damage("flip"),
    "blob-truncated": blob_damage("truncate"),
    "blob-emptied": blob_damage("empty"),
    "blob-appended": blob_damage("append"),
    "blob-removed": blob_damage("remove"),
    "blob-symlinked": blob_damage("symlink"),
    "blob-replaced-by-directory": blob_damage("directory"),
    "blob-misplaced": blob_damage("misplaced"),
    "stray-file-in-store": stray("root"),
    "tmp-is-a-file": replace_tmp_with_file,
    "stray-file-in-blobs": stray("blobs"),
    "stray-file-in-blob-folder": stray("blob-folder"),
    "stray-folder-in-blobs": stray("blobs-dir"),
    "marker-removed": marker_damage("remove"),
    "marker-garbled": marker_damage("garble"),
    "marker-wrong-format": marker_damage("format"),
    "marker-wrong-version": marker_damage("version"),
    "marker-not-an-object": marker_damage("list"),
}


#: what the report must say about each damage (a regular expression over the problems)
SAYS = {
    "db-zero-length": "empty \\(zero bytes\\)", "db-missing": "missing or not a regular file",
    "db-is-a-directory": "missing or not a regular file",
    "db-truncated-*": "cannot be read \\(database disk image is malformed\\)",
    "db-header-magic-flipped": "file is not a database", "db-page-size-flipped": "not a database",
    "db-page-2-cell-pointer-flipped": "sqlite: .*tree page 2", "db-*": "cannot be read",
    "row-deleted-artifact-file": "recorded digest", "row-deleted-artifact": "without the artifact",
    "row-deleted-run": "belong to a missing owner", "row-deleted-experiment": "lost its parent",
    "row-deleted-all-files-of-file": "has 0 file rows", "row-added-bogus-file": "recorded digest",
    "row-added-artifact-missing-blob": "is missing", "row-added-unknown-kind": "unknown kind",
    "row-added-orphan-field": "missing owner 'nobody'", "row-field-not-json": "not JSON",
    "row-field-unknown": "unknown field", "row-meta-not-json": "meta is not JSON",
    "row-unknown-artifact-type": "unknown type 'rocket'",
    "row-file-with-two-files": "has 2 file rows",
    "row-size-changed": "recorded size", "row-digest-changed": "recorded digest",
    "row-blob-name-is-a-path": "not a sha256", "row-negative-size": "impossible size",
    "relpath-*": "artifact 'd' .* records a path", "schema-table-dropped": "table fields is missing",
    "schema-user-version-*": "the database has format", "blob-byte-flipped": "does not match",
    "blob-truncated": "size 10 != ", "blob-emptied": "size 0 != ", "blob-appended": "size 1601 != ",
    "blob-removed": "is missing", "blob-symlinked": "symbolic link",
    "blob-replaced-by-directory": "not a blob file", "blob-misplaced": "blobs/00/.* not a blob file",
    "stray-file-in-store": "unexpected 'notes.txt'", "stray-*": "in blobs/ is not a blob file",
    "tmp-is-a-file": "tmp/ is not a real folder",
    "marker-removed": "marker .* is missing", "marker-wrong-version": "VERTA_STORE.json says 7",
    "marker-*": "marker .* is unreadable or wrong",
}


def says(name: str) -> str:
    """The expectation for a damage: its own entry, else the longest matching family."""
    if name in SAYS:
        return SAYS[name]
    families = [k for k in SAYS if k.endswith("*") and name.startswith(k[:-1])]
    return SAYS[max(families, key=len)]


def test_the_fuzz_has_more_than_thirty_distinct_damages():
    assert len(DAMAGES) >= 30


@pytest.fixture
def damaged(pristine, tmp_path, request):
    root = tmp_path / request.param / "store"
    shutil.copytree(pristine, root, symlinks=True)
    DAMAGES[request.param](root)
    return root


@pytest.mark.parametrize("damaged", sorted(DAMAGES), indirect=True)
def test_check_reports_the_damage_and_gc_refuses(damaged, capsys):
    before = snapshot(damaged)
    result = LocalStore.check_path(damaged)  # never raises for damage
    assert not result.ok and result.problems, result
    name = damaged.parent.name  # the case's own folder (see the fixture)
    assert any(re.search(says(name), p, re.S) for p in result.problems), (name, result.problems)
    assert snapshot(damaged) == before  # the check wrote nothing at all
    status = cli.main(["store", "check", "--store", str(damaged)])
    out, err = capsys.readouterr()
    assert status == 1 and "PROBLEM" in out and "problem(s) found" in out, out + err
    assert snapshot(damaged) == before
    status = cli.main(["store", "gc", "--min-age", "0", "--store", str(damaged)])
    out, err = capsys.readouterr()
    assert status == 1 and "verta-jupyter: error:" in err, out + err
    assert _only_sqlite_side_files_differ(before, snapshot(damaged))  # gc deleted nothing


@pytest.mark.parametrize("damaged", sorted(DAMAGES), indirect=True)
def test_the_api_answers_a_damaged_store_with_store_errors_only(damaged):
    """Open and use it: either it works far enough to run its own check (which then fails) or
    it raises StoreError; never a raw sqlite3, OS or JSON error."""
    try:
        store = LocalStore(damaged)
    except StoreError as exc:
        assert str(damaged) in str(exc)
        return
    try:
        assert not store.check().ok
        with pytest.raises(StoreError):
            store.collect_garbage(min_age=0)
    finally:
        store.close()


def _only_sqlite_side_files_differ(before: dict, after: dict) -> bool:
    strip = lambda d: {k: v for k, v in d.items() if not k.endswith(("-wal", "-shm"))}  # noqa: E731
    return strip(before) == strip(after)


def test_the_pristine_store_passes(pristine, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(pristine, root, symlinks=True)
    before = snapshot(root)
    assert LocalStore.check_path(root).ok
    assert cli.main(["store", "check", "--store", str(root)]) == 0
    assert snapshot(root) == before
