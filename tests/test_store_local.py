"""LocalStore: the store contract, plus what only an on-disk store has (folders, formats,
permissions, deduplication, corruption found by the integrity check)."""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from store_contract import StoreContract
from verta_jupyter import Client
from verta_jupyter.errors import NoSampleWarning, StoreError
from verta_jupyter.tracking import client as client_module
from verta_jupyter.tracking.stores.local.store import DB_NAME, FORMAT_VERSION, MARKER, LocalStore


@pytest.fixture
def store(tmp_path):
    s = LocalStore(tmp_path / "store")
    yield s
    s.close()


class TestLocalStoreContract(StoreContract):
    pass


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def test_new_folder_gets_the_documented_layout(tmp_path):
    LocalStore(tmp_path / "s").close()
    marker = json.loads((tmp_path / "s" / MARKER).read_text())
    assert marker == {"format": "verta_jupyter.store", "version": FORMAT_VERSION}
    assert {p.name for p in (tmp_path / "s").iterdir()} >= {MARKER, DB_NAME, "blobs", "tmp"}
    version = sqlite3.connect(tmp_path / "s" / DB_NAME).execute("PRAGMA user_version").fetchone()
    assert version == (FORMAT_VERSION,)


def test_a_folder_that_is_not_a_store_is_refused_and_untouched(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    with pytest.raises(StoreError, match="not a verta_jupyter store"):
        LocalStore(tmp_path)
    with pytest.raises(StoreError, match="is a file"):
        LocalStore(tmp_path / "notes.txt")
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_newer_format_is_refused(tmp_path):
    LocalStore(tmp_path / "s").close()
    db = sqlite3.connect(tmp_path / "s" / DB_NAME)
    db.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        LocalStore(tmp_path / "s")


def test_identical_blobs_are_stored_once(store, tmp_path):
    run = Client(store=store).set_experiment_run()
    (tmp_path / "a.bin").write_bytes(b"same bytes" * 1000)
    (tmp_path / "b.bin").write_bytes(b"same bytes" * 1000)
    run.log_artifact("a", str(tmp_path / "a.bin"))
    run.log_artifact("b", str(tmp_path / "b.bin"))
    assert len(list(store.blobs.all())) == 1
    assert store.check().ok


def test_a_rerun_cell_writes_only_what_changed(store, tmp_path, monkeypatch):
    """Re-logging a package whose small files the store already holds writes and fsyncs none
    of them again (a re-run cell is the common case); only changed bytes are written."""
    run = Client(store=store).set_experiment_run()
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "model.py").write_text("class M: pass\n")
    (package / "verta_model.json").write_text('{"v": 1}')
    run.log_artifact("p", package)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    run.log_artifact("p2", package)
    assert synced == []  # the transaction naming them is SQLite's, which does not go through os
    (package / "verta_model.json").write_text('{"v": 2}')
    run.log_artifact("p3", package)
    assert len(synced) == 2  # the one new blob and its folder
    assert len(list(store.blobs.all())) == 3 and store.check(verify_blobs=True).ok


def test_check_finds_a_corrupt_and_a_missing_blob(store, tmp_path):
    run = Client(store=store).set_experiment_run()
    (tmp_path / "a").write_bytes(b"a" * 100)
    (tmp_path / "b").write_bytes(b"b" * 100)
    run.log_artifact("a", str(tmp_path / "a"))
    run.log_artifact("b", str(tmp_path / "b"))
    blob_a = store.artifact_info("run", run.id, "a").digest.split(":")[1]
    blob_b = store.artifact_info("run", run.id, "b").digest.split(":")[1]
    store.blobs.path(blob_a).write_bytes(b"A" * 100)  # same size, other bytes
    store.blobs.path(blob_b).unlink()
    problems = store.check().problems
    assert any(blob_a in p and "does not match" in p for p in problems)
    assert any(blob_b in p and "missing" in p for p in problems)
    with pytest.raises(StoreError, match="corrupt"):
        run.fetch_artifacts(["a"])


def test_stray_temp_files_are_notes_not_problems(store):
    (store.root / "tmp" / "put-leftover").write_bytes(b"half")
    result = store.check()
    assert result.ok and any("temporary" in n for n in result.notes)


def test_default_store_is_verta_store_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VERTA_JUPYTER_STORE", raising=False)
    assert Client().store.location == str(tmp_path / "verta_store")
    monkeypatch.setenv("VERTA_JUPYTER_STORE", str(tmp_path / "elsewhere"))
    assert Client().store.location == str(tmp_path / "elsewhere")


def test_current_run_follows_set_experiment_run(store):
    client = Client(store=store)
    first = client.set_experiment_run("one")
    assert client_module.current_run() == first
    second = Client(store=store).set_experiment_run("two")
    assert client_module.current_run() == second


def test_reprs_are_readable(store, tmp_path):
    run = Client(store=store).set_experiment_run("shown")
    run.log_metric("acc", 0.5)
    (tmp_path / "f").write_text("x")
    run.log_artifact("f", str(tmp_path / "f"))
    text, html = repr(run), run._repr_html_()
    assert "ExperimentRun 'shown'" in text and "acc=0.5" in text and "f (file" in text
    assert "<table>" in html and "acc=0.5" in html and run.id in html


def test_read_only_store_reads_but_refuses_writes(tmp_path):
    """Non-root: the folder is chmod'ed read-only. Root ignores permissions, so there the child
    runs in its own mount namespace with the store bind-mounted read-only (a real EROFS)."""
    client = Client(store=tmp_path / "store")
    run = client.set_experiment_run("kept")
    run.log_metric("acc", 0.5)
    client.store.close()
    before = snapshot(tmp_path / "store")
    script = textwrap.dedent(f"""
        from verta_jupyter import Client
        from verta_jupyter.errors import StoreError
        run = Client(store={str(tmp_path / 'store')!r}).get_experiment_run(id={run.id!r})
        assert run.get_metric("acc") == 0.5
        try:
            run.log_metric("loss", 1.0)
        except StoreError as exc:
            print("REFUSED:", exc)
    """)
    env = {**os.environ, "VERTA_JUPYTER_CACHE": str(tmp_path / "cache")}
    with _read_only(tmp_path / "store") as wrap:
        proc = subprocess.run(wrap([sys.executable, "-c", script]), capture_output=True,
                              text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "REFUSED:" in proc.stdout and "read-only" in proc.stdout
    assert snapshot(tmp_path / "store") == before


@contextlib.contextmanager
def _read_only(folder: Path):
    if os.geteuid() != 0:
        paths = [folder, *folder.rglob("*")]
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield lambda argv: argv
        finally:
            for path in paths:
                path.chmod(0o755 if path.is_dir() else 0o644)
        return
    if not shutil.which("unshare"):
        pytest.fail("running as root without `unshare`: cannot make a read-only folder")
    mount = f"mount --bind -o ro {shlex.quote(str(folder))} {shlex.quote(str(folder))}"
    yield lambda argv: ["unshare", "-m", "sh", "-c", f'{mount} && exec "$@"', "sh", *argv]


def test_registered_version_shares_the_runs_blobs(store, tmp_path):
    client = Client(store=store)
    run = client.set_experiment_run()
    (tmp_path / "a.bin").write_bytes(b"a" * 1000)
    run.log_artifact("a", str(tmp_path / "a.bin"))
    with pytest.warns(NoSampleWarning):
        run.log_model(EchoModelForCopy, artifacts=["a"])
    blobs = sorted(store.blobs.all())
    version = client.get_or_create_registered_model("m").create_version_from_run(run)
    assert sorted(store.blobs.all()) == blobs
    info = store.artifact_info("model_version", version.id, "a")
    assert info.meta["source_run_id"] == run.id and info.digest == store.artifact_info("run", run.id, "a").digest
    assert store.check().ok


class EchoModelForCopy:
    def __init__(self, artifacts):
        self.path = artifacts["a"]

    def predict(self, data):
        return data


def test_blob_copy_falls_back_when_sendfile_is_unsupported(store, tmp_path, monkeypatch):
    """sendfile is refused by some filesystems (EINVAL); the plain read/write path takes over."""
    import errno

    from verta_jupyter.tracking.stores.local import blobs

    def refuse(*args):
        raise OSError(errno.EINVAL, "sendfile not supported here")

    monkeypatch.setattr(blobs.os, "sendfile", refuse)
    data = os.urandom(3 * blobs.READ_BACK + 123)
    (tmp_path / "f.bin").write_bytes(data)
    run = Client(store=store).set_experiment_run()
    run.log_artifact("f", str(tmp_path / "f.bin"))
    assert Path(run.fetch_artifacts(["f"])["f"]).read_bytes() == data
    assert store.check().ok


def test_an_older_store_is_migrated_in_one_step(tmp_path, monkeypatch):
    """The migration path, exercised with a made-up version 2 that adds a column."""
    from verta_jupyter.tracking.stores.local import folder as local_folder
    from verta_jupyter.tracking.stores.local import store as local

    client = Client(store=tmp_path / "s")
    kept = client.set_experiment_run("kept")
    kept.log_metric("acc", 0.5)
    client.store.close()

    def add_notes_column(conn, root):
        conn.execute("ALTER TABLE entities ADD COLUMN notes TEXT NOT NULL DEFAULT ''")

    monkeypatch.setattr(local, "FORMAT_VERSION", 2)
    monkeypatch.setattr(local_folder, "FORMAT_VERSION", 2)
    monkeypatch.setitem(local_folder.MIGRATIONS, 1, add_notes_column)
    store = LocalStore(tmp_path / "s")
    assert json.loads((tmp_path / "s" / MARKER).read_text())["version"] == 2
    assert store._read("PRAGMA user_version") == [(2,)]
    assert ("notes",) in [(row[1],) for row in store._read("PRAGMA table_info(entities)")]
    assert Client(store=store).get_experiment_run(id=kept.id).get_metric("acc") == 0.5
    assert store.check().ok
    fresh = LocalStore(tmp_path / "new")  # a new store climbs the same path
    assert fresh._read("PRAGMA user_version") == [(2,)]


def test_garbage_collection_keeps_everything_referenced(store, tmp_path):
    from verta_jupyter.tracking.stores.local.blobs import BlobFiles

    run = Client(store=store).set_experiment_run()
    (tmp_path / "kept.bin").write_bytes(b"kept" * 100)
    (tmp_path / "orphan.bin").write_bytes(b"orphan" * 100)
    run.log_artifact("kept", str(tmp_path / "kept.bin"))
    orphan, _ = BlobFiles(store.root).put(tmp_path / "orphan.bin")  # as if a crash hit here
    (store.root / "tmp" / "put-stray").write_bytes(b"half")
    assert store.collect_garbage(min_age=3600) == {"temp_files": 0, "blobs": 0, "bytes": 0}
    removed = store.collect_garbage(min_age=0)
    assert removed["temp_files"] == 1 and removed["blobs"] == 1
    assert not store.blobs.exists(orphan) and not list((store.root / "tmp").iterdir())
    assert Path(run.fetch_artifacts(["kept"])["kept"]).read_bytes() == b"kept" * 100
    result = store.check()
    assert result.ok and not result.notes


def test_a_blob_collected_mid_log_is_written_again(store, tmp_path, monkeypatch):
    """Garbage collection runs at the worst moment: after log_artifact reused an existing
    unreferenced blob, before its transaction. The artifact still ends up complete."""
    (tmp_path / "f.bin").write_bytes(b"payload" * 1000)
    store.blobs.put(tmp_path / "f.bin")  # unreferenced: log_artifact will deduplicate onto it
    original_put = store.blobs.put
    calls = []

    def put_then_collect(path, progress=None):
        result = original_put(path, progress)
        if not calls:
            calls.append(store.collect_garbage(min_age=0))
        return result

    monkeypatch.setattr(store.blobs, "put", put_then_collect)
    run = Client(store=store).set_experiment_run()
    run.log_artifact("f", str(tmp_path / "f.bin"))
    assert calls[0]["blobs"] == 1  # the collection really removed it
    assert Path(run.fetch_artifacts(["f"])["f"]).read_bytes() == b"payload" * 1000
    assert store.check().ok


def test_directory_with_a_symlinked_directory_is_refused(store, tmp_path):
    tree = tmp_path / "tree"
    (tree / "real").mkdir(parents=True)
    (tree / "real" / "x.txt").write_text("x")
    (tree / "file-link").symlink_to(tree / "real" / "x.txt")
    run = Client(store=store).set_experiment_run()
    run.log_artifact("ok", tree)  # a link to a file is the file
    assert (Path(run.fetch_artifacts(["ok"])["ok"]) / "file-link").read_text() == "x"
    (tree / "dir-link").symlink_to(tree / "real")
    with pytest.raises(StoreError, match="link to a directory"):
        run.log_artifact("loop", tree)
    assert run.get_artifact_keys() == ["ok"]


def test_a_new_store_folder_gets_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        LocalStore(tmp_path / "s").close()
    finally:
        os.umask(umask)
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "s" / MARKER).stat().st_mode & 0o777 == 0o644


def test_blobs_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        store = LocalStore(tmp_path / "s")
        (tmp_path / "f").write_text("x")
        Client(store=store).set_experiment_run().log_artifact("f", str(tmp_path / "f"))
    finally:
        os.umask(umask)
    (blob,) = [p for p in (tmp_path / "s" / "blobs").rglob("*") if p.is_file()]
    assert blob.stat().st_mode & 0o777 == 0o644


def test_large_files_are_streamed_not_loaded(store, tmp_path):
    import tracemalloc

    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for i in range(64):
            f.write(bytes([i]) * (1 << 20))
    run = Client(store=store).set_experiment_run()
    tracemalloc.start()
    try:
        run.log_artifact("big", str(big))
        fetched = run.fetch_artifacts(["big"])["big"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB for a 64 MiB file"
    assert Path(fetched).stat().st_size == 64 << 20


def test_no_store_can_be_made_in_a_read_only_folder(tmp_path):
    (tmp_path / "ro").mkdir()
    script = textwrap.dedent(f"""
        from verta_jupyter import Client
        from verta_jupyter.errors import StoreError
        try:
            Client(store={str(tmp_path / 'ro' / 'verta_store')!r})
        except StoreError as exc:
            print("REFUSED:", exc)
    """)
    with _read_only(tmp_path / "ro") as wrap:
        proc = subprocess.run(wrap([sys.executable, "-c", script]), capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "REFUSED: cannot create a store" in proc.stdout and "store=PATH" in proc.stdout
    assert list((tmp_path / "ro").iterdir()) == []


def test_check_and_gc_use_no_private_member_of_the_store():
    """Issue 10: the check works on a connection and the blob files the store hands it; it
    imports no store class and touches no underscored attribute of another object."""
    import ast

    from verta_jupyter.tracking.stores.local import check

    tree = ast.parse(Path(check.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert "LocalStore" not in imported
    private = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Attribute)
               and node.attr.startswith("_") and not node.attr.startswith("__")]
    assert private == []
