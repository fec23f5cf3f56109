"""The embedded store off Linux: the portable blob copy (standard library: read, write, hash the
same bytes) is chosen by capability, and `VERTA_JUPYTER_PORTABLE=1` forces it here so CI can run
the store suites a second time on it. Also temp hygiene: an interrupted write or fetch leaves
nothing in temp.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from verta_jupyter import Client
from verta_jupyter.tracking.stores.local import blobs
from verta_jupyter.tracking.stores.local.store import LocalStore


def _round_trip(store: LocalStore, tmp_path: Path) -> None:
    """Log and fetch a multi-chunk file, a directory and an object; check the store."""
    data = os.urandom(3 * blobs.READ_BACK + 123)
    (tmp_path / "f.bin").write_bytes(data)
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "x.txt").write_text("x" * 1000)
    run = Client(store=store).set_experiment_run()
    run.log_artifact("f", str(tmp_path / "f.bin"))
    run.log_artifact("d", tmp_path / "tree")
    run.log_artifact("o", {"an": "object"})
    assert Path(run.fetch_artifacts(["f"])["f"]).read_bytes() == data
    assert (Path(run.fetch_artifacts(["d"])["d"]) / "sub" / "x.txt").read_text() == "x" * 1000
    assert run.get_artifact("o") == {"an": "object"}
    assert store.check().ok


@pytest.fixture
def calls(monkeypatch):
    """Record every call of the Linux-only primitives; fail loudly if one is made."""
    made: list[str] = []

    def spy(name):
        def refuse(*args, **kwargs):
            made.append(name)
            raise AssertionError(f"os.{name} was called on the portable path")
        return refuse

    for name in ("sendfile", "preadv", "pread", "posix_fadvise"):
        monkeypatch.setattr(os, name, spy(name), raising=False)
    return made


def test_the_switch_takes_the_portable_path(tmp_path, monkeypatch, calls):
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VERTA_JUPYTER_PORTABLE", "1")
    portable = []
    real = blobs._copy_hashing_portable
    monkeypatch.setattr(blobs, "_copy_hashing_portable",
                        lambda *a: portable.append(a[0]) or real(*a))
    assert not blobs.fast_copy_available()
    store = LocalStore(tmp_path / "s")
    _round_trip(store, tmp_path)
    store.close()
    assert calls == []  # not one Linux-only call
    # every copy went through the fallback: the big file's put and every fetch (small files are
    # put from memory, which needs no copy path at all)
    assert len(portable) >= 4


def test_a_platform_without_the_linux_calls_still_stores(tmp_path, monkeypatch):
    """What Windows offers: no sendfile, pread, preadv or fadvise, no O_NOFOLLOW, and no
    folder that can be opened for fsync."""
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VERTA_JUPYTER_PORTABLE", raising=False)
    for name in ("sendfile", "preadv", "pread", "posix_fadvise", "O_DIRECTORY"):
        monkeypatch.delattr(os, name, raising=False)
    monkeypatch.setattr(blobs, "_NOFOLLOW", 0)
    assert not blobs.fast_copy_available()
    store = LocalStore(tmp_path / "s")
    _round_trip(store, tmp_path)
    store.close()


SCRIPT = textwrap.dedent('''
    import os, sys
    from pathlib import Path
    from verta_jupyter import Client
    from verta_jupyter.tracking.stores.local import blobs

    count = {"sendfile": 0}
    real = os.sendfile
    def counting(*args):
        count["sendfile"] += 1
        return real(*args)
    os.sendfile = counting
    scratch = Path(sys.argv[1])
    data = os.urandom(1 << 20)
    (scratch / "f.bin").write_bytes(data)
    client = Client(store=scratch / "store")
    run = client.set_experiment_run()
    run.log_artifact("f", str(scratch / "f.bin"))
    assert Path(run.fetch_artifacts(["f"])["f"]).read_bytes() == data
    assert client.store.check().ok
    print(blobs.fast_copy_available(), count["sendfile"])
''')


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fast path exists on Linux only")
@pytest.mark.parametrize("portable", ["1", ""])
def test_a_fresh_process_honours_the_switch(tmp_path, portable):
    """Set in the environment, as CI sets it: no sendfile at all; unset: the kernel copies."""
    env = {**os.environ, "VERTA_JUPYTER_PORTABLE": portable,
           "VERTA_JUPYTER_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    fast, sendfiles = proc.stdout.split()
    if portable:
        assert fast == "False" and sendfiles == "0"
    else:
        assert fast == "True" and int(sendfiles) > 0


# -- temp hygiene ---------------------------------------------------------------------------------
class Interrupted(BaseException):
    """Like KeyboardInterrupt mid-transfer, without disturbing pytest."""


def _interrupt_after_first_chunk(n: int) -> None:
    raise Interrupted()


@pytest.mark.parametrize("portable", ["1", ""])
def test_an_interrupted_write_leaves_nothing_in_temp(tmp_path, monkeypatch, portable):
    monkeypatch.setenv("VERTA_JUPYTER_PORTABLE", portable)
    store = LocalStore(tmp_path / "s")
    run = store.get_or_create("run", "r", store.get_or_create(
        "experiment", "e", store.get_or_create("project", "p").id).id)
    (tmp_path / "big.bin").write_bytes(os.urandom(3 * blobs.READ_BACK))
    with pytest.raises(Interrupted):
        store.put_artifact("run", run.id, "big", tmp_path / "big.bin", type="file",
                           progress=_interrupt_after_first_chunk)
    assert list((store.root / "tmp").iterdir()) == []
    assert list(store.blobs.all()) == [] and store.list_artifacts("run", run.id) == []
    store.close()


@pytest.mark.parametrize("portable", ["1", ""])
def test_an_interrupted_fetch_leaves_nothing_behind(tmp_path, monkeypatch, portable):
    monkeypatch.setenv("VERTA_JUPYTER_PORTABLE", portable)
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    store = LocalStore(tmp_path / "s")
    client = Client(store=store)
    run = client.set_experiment_run()
    (tmp_path / "tree").mkdir()
    for i in range(3):
        (tmp_path / "tree" / f"{i}.bin").write_bytes(os.urandom(1000))
    run.log_artifact("d", tmp_path / "tree")
    with pytest.raises(Interrupted):
        store.fetch_artifact("run", run.id, "d", tmp_path / "out", progress=_interrupt_after_first_chunk)
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(store, "fetch_artifact", _interrupting(store.fetch_artifact))
    with pytest.raises(Interrupted):
        run.fetch_artifacts(["d"])
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
    store.close()


def _interrupting(fetch):
    def fetch_then_interrupt(*args, **kwargs):
        return fetch(*args, **{**kwargs, "progress": _interrupt_after_first_chunk})
    return fetch_then_interrupt


def test_a_store_is_created_in_an_empty_folder_where_rename_cannot_replace_it(tmp_path, monkeypatch):
    """Windows' rename refuses an existing target, even an empty folder (POSIX replaces it)."""
    from verta_jupyter.tracking.stores.local import folder

    real_rename = os.rename

    def windows_rename(src, dst):
        if os.path.exists(dst):
            raise FileExistsError(183, "Cannot create a file when that file already exists", dst)
        real_rename(src, dst)

    monkeypatch.setattr(folder.os, "rename", windows_rename)
    (tmp_path / "s").mkdir()
    store = LocalStore(tmp_path / "s")
    assert store.check().ok
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no staging folder left
