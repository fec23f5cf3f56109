"""A damaged or forged embedded store, on disk: every failure is a StoreError that names the store
and says what to do, nothing is written outside its place, and nothing is "repaired" by loss.

The stores here are real folders damaged the way a disk, a sync tool or an attacker would:
bytes of the SQLite file cut or garbled, rows rewritten with hostile paths (the recorded digest
rewritten too, so only the path check stands in the way).
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from verta_jupyter import Client
from verta_jupyter.errors import StoreError
from verta_jupyter.package.paths import UnsafePath, check_relpath, safe_target
from verta_jupyter.tracking.stores.base import tree_digest
from verta_jupyter.tracking.stores.local.store import DB_NAME, MARKER, LocalStore


def snapshot(root: Path, *, live: bool = False) -> dict[str, bytes]:
    """Every file under `root` (links as their target text), so "byte-identical" means it.
    `live`: leave out SQLite's -wal/-shm files, which an open connection owns."""
    found = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if live and rel.endswith(("-wal", "-shm")):
            continue
        if p.is_symlink():
            found[rel] = b"->" + os.readlink(p).encode()
        elif p.is_file():
            found[rel] = hashlib.sha256(p.read_bytes()).digest()
    return found


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh process."""
    return subprocess.run([sys.executable, "-m", "verta_jupyter.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture
def filled(tmp_path, monkeypatch):
    """A closed store with a run holding a metric, a file and a directory artifact."""
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "store"
    client = Client(store=root)
    run = client.set_experiment_run("r")
    run.log_metric("acc", 0.9)
    (tmp_path / "f.txt").write_text("file artifact")
    run.log_artifact("f", str(tmp_path / "f.txt"))
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")
    run.log_artifact("d", tree)
    client.store.close()
    return root, run.id


def sql(root: Path, *statements: str, args: tuple = ()) -> None:
    db = sqlite3.connect(root / DB_NAME)
    for statement in statements:
        db.execute(statement, args)
    db.commit()
    db.close()


# -- a store whose database is gone never starts again as a new, empty store ---------------------
@pytest.mark.parametrize("damage", ["zero-length", "missing"])
def test_a_lost_database_is_damage_not_a_new_store(filled, damage):
    root, _ = filled
    if damage == "zero-length":
        (root / DB_NAME).write_bytes(b"")
    else:
        (root / DB_NAME).unlink()
    before = snapshot(root)
    with pytest.raises(StoreError) as caught:
        Client(store=root)
    message = str(caught.value)
    assert str(root) in message and "damaged" in message and "backup" in message
    assert snapshot(root) == before  # nothing initialised, nothing deleted
    listed = cli("runs", "list", "--store", str(root))
    assert listed.returncode == 1 and "damaged" in listed.stderr and "Traceback" not in listed.stderr
    checked = cli("store", "check", "--store", str(root))
    assert checked.returncode == 1 and "PROBLEM" in checked.stdout and "Traceback" not in checked.stderr
    collected = cli("store", "gc", "--min-age", "0", "--store", str(root))
    assert collected.returncode == 1 and "Traceback" not in collected.stderr
    assert snapshot(root) == before  # every blob is still there


def test_a_store_missing_its_marker_is_damage_not_a_stranger(filled):
    root, _ = filled
    (root / MARKER).unlink()
    before = snapshot(root)
    with pytest.raises(StoreError, match="marker .* is missing"):
        LocalStore(root)
    assert snapshot(root) == before


def test_an_emptied_database_is_not_recreated(filled):
    """A valid SQLite file with no schema (user_version 0): damage, not a fresh start."""
    root, _ = filled
    (root / DB_NAME).unlink()
    sqlite3.connect(root / DB_NAME).execute("CREATE TABLE other (x)").connection.commit()
    before = snapshot(root)
    with pytest.raises(StoreError, match="damaged.*no format version"):
        LocalStore(root)
    assert snapshot(root) == before


# -- every sqlite3 error is a StoreError naming the store ---------------------------------------
def _garble(root: Path, how: str) -> None:
    db = root / DB_NAME
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    if how == "header":
        data[0:16] = b"not a database!!"
    elif how == "truncated":
        data = data[: page + 100]
    elif how == "pages":
        for offset in range(page, len(data), page):  # every b-tree page header
            data[offset] ^= 0xFF
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["header", "truncated", "pages"])
def test_a_garbled_database_gives_store_errors_not_sqlite_tracebacks(filled, how):
    root, run_id = filled
    _garble(root, how)
    before = snapshot(root)
    try:  # opening may succeed (the first page is intact); using it must not leak sqlite3
        client = Client(store=root)
        run = client.get_experiment_run(id=run_id)
        run.get_metrics()
        run.fetch_artifacts(["d"])
        pytest.fail("a garbled database answered as if nothing were wrong")
    except StoreError as exc:
        assert str(root) in str(exc) and "store check" in str(exc) and "damaged" in str(exc)
    assert snapshot(root, live=True) == {k: v for k, v in before.items()
                                         if not k.endswith(("-wal", "-shm"))}
    for command in (["runs", "list"], ["runs", "show", run_id]):
        proc = cli(*command, "--store", str(root))
        assert proc.returncode == 1, proc.stdout
        assert "Traceback" not in proc.stderr and str(root) in proc.stderr
    checked = cli("store", "check", "--store", str(root))
    assert checked.returncode == 1 and "PROBLEM" in checked.stdout, checked.stdout + checked.stderr
    assert "Traceback" not in checked.stderr


# -- paths from rows are checked before anything is written -------------------------------------
HOSTILE = ["../../x", "../x", "a/../../x", "/tmp/vj-escape", "C:\\x", "C:x", "\\\\server\\x",
           "a\\..\\..\\x", "./a.txt", "a//b.txt", "sub/", ""]


def _forge_relpath(root: Path, run_id: str, key: str, old: str, new: str) -> None:
    """Rewrite one file row's path and the artifact's digest to match, as a forger would."""
    db = sqlite3.connect(root / DB_NAME)
    db.execute("UPDATE artifact_files SET relpath=? WHERE owner_id=? AND key=? AND relpath=?",
               (new, run_id, key, old))
    rows = db.execute("SELECT relpath, blob, size FROM artifact_files WHERE owner_id=? AND key=?",
                      (run_id, key)).fetchall()
    digest = tree_digest((rel, "sha256:" + blob, size) for rel, blob, size in rows)
    db.execute("UPDATE artifacts SET digest=? WHERE owner_id=? AND key=?", (digest, run_id, key))
    db.commit()
    db.close()


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_relpath_is_refused_before_anything_is_written(filled, tmp_path, hostile):
    root, run_id = filled
    _forge_relpath(root, run_id, "d", "sub/b.txt", hostile)
    # everything around the fetch destination: the deepest escape (../../x) stays inside
    # tmp_path, whose snapshot therefore sees any file written where it must not be
    outside_before = snapshot(tmp_path)
    store = LocalStore(root)
    dest = tmp_path / "deep" / "er" / "dest"
    with pytest.raises(StoreError) as caught:
        store.fetch_artifact("run", run_id, "d", dest)
    message = str(caught.value)
    assert "artifact 'd'" in message and "refusing" in message and "store check" in message
    assert not dest.exists() and not (tmp_path / "x").exists()
    assert not Path("/tmp/vj-escape").exists()
    store.close()
    assert snapshot(tmp_path, live=True) == {
        k: v for k, v in outside_before.items() if not k.endswith(("-wal", "-shm"))}
    result = LocalStore.check_path(root)
    assert any("artifact 'd'" in p for p in result.problems), result.problems


def test_the_api_refuses_a_hostile_relpath_with_a_store_error(filled, tmp_path):
    root, run_id = filled
    _forge_relpath(root, run_id, "d", "sub/b.txt", "../../x")
    run = Client(store=root).get_experiment_run(id=run_id)
    with pytest.raises(StoreError, match="artifact 'd'"):
        run.fetch_artifacts(["d"])
    assert not (tmp_path / "x").exists() and not (tmp_path / "cache" / "x").exists()
    assert not any(p.name == "x" for p in tmp_path.rglob("x"))


def test_a_blob_name_that_is_a_path_is_refused(filled, tmp_path):
    root, run_id = filled
    target = tmp_path / "secret"
    target.write_text("not yours")
    forged = os.path.relpath(target, root / "blobs" / "ab")
    sql(root, "UPDATE artifact_files SET blob=? WHERE owner_id=? AND key='f'",
        args=(forged, run_id))
    store = LocalStore(root)
    with pytest.raises(StoreError, match="not a sha256"):
        store.fetch_artifact("run", run_id, "f", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    store.close()


def test_forged_rows_that_do_not_give_the_recorded_digest_are_refused(filled, tmp_path):
    """An extra row smuggled into a directory artifact (digest left alone) is caught at fetch."""
    root, run_id = filled
    blob = hashlib.sha256(b"a").hexdigest()
    sql(root, "INSERT INTO artifact_files VALUES (?, 'd', 'extra.txt', ?, 1)", args=(run_id, blob))
    store = LocalStore(root)
    with pytest.raises(StoreError, match="do not give its recorded digest"):
        store.fetch_artifact("run", run_id, "d", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    store.close()


@pytest.mark.parametrize("good", ["a.txt", "sub/b.txt", "deep/er/c.json", ".hidden", "a..b"])
def test_ordinary_relpaths_are_accepted(good):
    assert check_relpath(good) == good


def test_a_symlink_on_the_way_is_refused(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (dest / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePath, match="symbolic link"):
        safe_target(dest, "sub/x.txt")
    (dest / "file").write_text("x")
    with pytest.raises(UnsafePath, match="passes through a file"):
        safe_target(dest, "file/x.txt")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_file_name_no_platform_can_fetch_safely_is_refused_at_log_time(tmp_path):
    store = LocalStore(tmp_path / "s")
    run = Client(store=store).set_experiment_run()
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a\\b.txt").write_text("x")  # legal on POSIX, a separator on Windows
    before = snapshot(store.root, live=True)
    with pytest.raises(StoreError, match="backslash"):
        run.log_artifact("d", tree)
    assert snapshot(store.root, live=True) == before
    store.close()


# -- gc never runs on a damaged store -----------------------------------------------------------
def test_gc_refuses_a_store_that_fails_its_check(filled):
    root, run_id = filled
    sql(root, "DELETE FROM artifact_files WHERE owner_id=? AND key='f'", args=(run_id,))
    store = LocalStore(root)
    before = snapshot(root / "blobs")
    with pytest.raises(StoreError, match="refuses to run on a damaged store"):
        store.collect_garbage(min_age=0)
    assert snapshot(root / "blobs") == before  # the blob the lost row referenced is kept
    store.close()


# -- the cache names folders after recorded digests and file names: both are data ---------------
def test_a_forged_digest_cannot_steer_the_cache_outside_its_folder(filled, tmp_path):
    root, run_id = filled
    # the entry would be cache/sha256/<digest[:2]>/<digest>.<slot>: here tmp_path/escaped.<slot>
    sql(root, "UPDATE artifacts SET digest='sha256:../../escaped' WHERE key='f'")
    outside_before = snapshot(tmp_path, live=True)
    run = Client(store=root).get_experiment_run(id=run_id)
    with pytest.raises(StoreError, match="artifact 'f'.*not sha256:<64 hex>"):
        run.fetch_artifacts(["f"])
    assert not list(tmp_path.glob("escaped*")) and not list(tmp_path.parent.glob("escaped*"))
    after = snapshot(tmp_path, live=True)
    assert after == outside_before


@pytest.mark.parametrize("filename", ["..", "../../evil.txt", "C:\\evil.txt", "a\0b", ""])
def test_a_forged_file_name_cannot_name_a_cache_file_outside_its_entry(filled, tmp_path, filename):
    root, run_id = filled
    sql(root, "UPDATE artifacts SET filename=? WHERE key='f'", args=(filename,))
    run = Client(store=root).get_experiment_run(id=run_id)
    path = Path(run.fetch_artifacts(["f"])["f"])
    assert path.read_text() == "file artifact"
    assert path.parent.parent.parent.parent == tmp_path / "cache"  # sha256/xx/<entry>/<name>
    assert not (tmp_path / "evil.txt").exists()
