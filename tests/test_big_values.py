"""Big values at disk speed: each captured value is written once (pickle protocol 5, large
buffers out of band) to files hashed as they are written, placed in packages and in the local
store by hard link where the file system allows (a copy where it does not), and read back by
model.py one copy from disk. Every shape of value must rebuild the same in a fresh process."""
from __future__ import annotations

import gc
import hashlib
import os
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import pytest

from verta_jupyter import Client, capture_model
from verta_jupyter.capture import values
from verta_jupyter.capture.fingerprint import differences
from verta_jupyter.errors import CapturedByValueWarning, CaptureError, PackageError
from verta_jupyter.package.format import read_manifest, verify_package
from verta_jupyter.package.valuefiles import HashingWriter, in_own_scratch, trusted_digest
from verta_jupyter.tracking.stores.local.blobs import BlobFiles
from verta_jupyter.validation.secrets import secret_problems
from verta_jupyter.worker.rebuild import rebuild_in_subprocess
from verta_jupyter.worker.scratch import remove_scratch, scratch_dir

from test_capture_fidelity import MODEL  # the one-method model both files fill in


# What the model reports about VALUE: the same text in the notebook and the fresh process
# means the value came back whole (dtype, shape, order, every byte, still writable).
SUMMARY = '''
import hashlib as _h, numpy as _np
def summary(v):
    if isinstance(v, _np.ndarray):
        data = repr(v.tolist()) if v.dtype.hasobject else _h.sha256(_np.ascontiguousarray(v).tobytes()).hexdigest()
        return [type(v).__name__, v.dtype.str, list(v.shape), bool(v.flags.f_contiguous and v.ndim > 1),
                bool(v.flags.writeable), data]
    if type(v).__name__ == "DataFrame":
        import pandas as _pd
        return [list(map(str, v.dtypes)), list(v.columns), int(_pd.util.hash_pandas_object(v).sum())]
    if isinstance(v, list):
        return [summary(x) for x in v]
    return _h.sha256(bytes(v)).hexdigest()
'''

VALUES = {
    "contiguous-1d": "np.random.default_rng(0).random(100_000)",
    "strided-view": "np.arange(300_000, dtype='float64')[::3]",
    "slice-of-a-base": "BASE = np.arange(400_000, dtype='int32')\nVALUE = BASE[50_000:]",
    "fortran-order": "np.asfortranarray(np.random.default_rng(1).random((400, 300)))",
    "zero-d": "np.array(3.25)",
    "empty": "np.zeros((0, 5))",
    "object-dtype": "np.array([{'a': 1}, 'text', 2.5, None] * 50, dtype=object)",
    "bytes-dtype": "np.array([b'abc', b'de'] * 40_000)",
    "structured": "np.zeros(20_000, dtype=[('id', 'i8'), ('score', 'f4'), ('tag', 'S3')])",
    "memmap": "np.memmap(MMAP_PATH, dtype='float64', mode='w+', shape=(50_000,))\nVALUE[:] = 7.5",
    "data-frame-mixed": ("pd.DataFrame({'i': np.arange(30_000), 'f': np.linspace(0, 1, 30_000), "
                         "'s': ['x%d' % (i % 7) for i in range(30_000)], "
                         "'t': pd.date_range('2020-01-01', periods=30_000, freq='min'), "
                         "'c': pd.Categorical(['a', 'b', 'c'] * 10_000)})"),
    "bytes-heavy": "bytes(range(256)) * 40_000",
    "thousand-buffers": "[np.full(9_000, i, dtype='float64') for i in range(1000)]",
}


def _define(shell, tmp_path, key):
    shell.run(f"import numpy as np, pandas as pd\nMMAP_PATH = {str(tmp_path / 'data.mmap')!r}")
    expression = VALUES[key]
    shell.run(expression if "VALUE =" in expression else "VALUE = " + expression)
    shell.run(SUMMARY)
    shell.run(MODEL.format(body="summary(VALUE)"))


@pytest.mark.parametrize("key", sorted(VALUES))
def test_every_kind_of_value_rebuilds_the_same_in_a_fresh_process(shell, tmp_path, key):
    _define(shell, tmp_path, key)
    expected = shell.ns["MyModel"]({}).predict(None)
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    package = captured.save(tmp_path / "pkg", sample_input=None)
    result = rebuild_in_subprocess(package, sample_input=0)
    assert result.ok, result.traceback
    assert __import__("json").loads(__import__("json").dumps(expected)) == result.output
    assert differences(captured.fingerprint, result.fingerprint) == []
    files = sorted(p.relative_to(package).as_posix() for p in (package / "values").iterdir())
    assert len(files) <= 2 and all(f.startswith("values/0.") for f in files), files  # one value: 1-2 files
    if key in ("contiguous-1d", "fortran-order", "thousand-buffers", "data-frame-mixed"):
        assert "values/0.buf" in files  # the data went out of band, not through the pickle stream


def test_a_thousand_buffers_are_one_file_listed_in_model_py(shell, tmp_path):
    _define(shell, tmp_path, "thousand-buffers")
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    stored = captured.pickled["VALUE"]
    assert stored.sizes == [72_000] * 1000 and stored.buffers.stat().st_size == 72_000_000
    assert "(72000, 72000," in captured.source  # model.py reads each into its own bytearray


def test_pickling_that_fails_half_way_removes_what_it_wrote_and_names_the_global(shell):
    shell.run("import numpy as np, threading\nHALF = [np.ones(1_000_000), threading.Lock()]")
    shell.run(MODEL.format(body="len(HALF)"))
    spool = values._spool()
    before = set(os.listdir(spool))
    with pytest.raises(CaptureError, match="'HALF'") as caught:
        capture_model(shell.ns["MyModel"], shell.ns)
    assert "lock" in str(caught.value).lower()
    assert set(os.listdir(spool)) == before  # the 8 MB already written is gone


@pytest.mark.parametrize("damage", ["truncate", "flip", "extend"])
def test_a_damaged_buffer_file_is_refused(shell, tmp_path, damage):
    _define(shell, tmp_path, "contiguous-1d")
    package = capture_model(shell.ns["MyModel"], shell.ns).save(tmp_path / "pkg")
    path = package / "values" / "0.buf"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:-8]
    elif damage == "flip":
        data[len(data) // 2] ^= 1
    else:
        data += b"\0" * 8
    path.unlink()  # a fresh file: the package's may share its bytes with the capture's
    path.write_bytes(bytes(data))
    with pytest.raises(PackageError, match=r"'values/0.buf' was modified"):
        verify_package(package)
    result = rebuild_in_subprocess(package, sample_input=0)
    assert not result.ok and "values/0.buf" in result.error


def test_a_token_inside_a_buffer_across_a_chunk_boundary_is_found(shell):
    dapi = "dapi" + "0123456789abcdef0123456789abcdef"
    shell.run("import numpy as np\nRAW = np.random.default_rng(3).integers(0, 256, 12 << 20, dtype=np.uint8)\n"
              f"RAW[(8 << 20) - 12:(8 << 20) + 26] = np.frombuffer(b'\\0' + b'{dapi}' + b'\\0', dtype=np.uint8)")
    shell.run(MODEL.format(body="int(RAW[0])"))
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    assert captured.pickled["RAW"].buffers is not None  # the bytes are in the buffer file only
    found = secret_problems(captured, shell.ns)
    assert [p.code for p in found] == ["VJ203"] and found[0].name == "RAW", found
    assert "pickled state" in found[0].message and dapi[4:] not in found[0].message


def test_capture_and_save_hold_no_copy_of_a_big_array(shell, tmp_path):
    shell.run("import numpy as np\nBIG = np.random.default_rng(0).random(5_000_000)")  # 40 MB
    shell.run(MODEL.format(body="float(BIG[0])"))
    tracemalloc.start()
    try:
        captured = capture_model(shell.ns["MyModel"], shell.ns)
        captured.save(tmp_path / "pkg")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12_000_000, peak  # numpy reports its allocations here: no 40 MB copy


# -- into the store: moved, not copied, where the file system allows ---------------------------

def _log(shell, store: Path):
    shell.run("import numpy as np\nW = np.random.default_rng(5).random(100_000)")
    shell.run(MODEL.format(body="float(W[data])"))
    run = Client(store=str(store)).set_experiment_run("big")
    with pytest.warns(CapturedByValueWarning):  # VJ208: W is frozen at capture, as it should be
        logged = run.log_model(shell.ns["MyModel"], sample_input=3, namespace=shell.ns)
    stored = logged.report.captured.pickled["W"]
    blob = BlobFiles(store).path(stored.buffers_sha256)
    assert blob.is_file() and hashlib.sha256(blob.read_bytes()).hexdigest() == stored.buffers_sha256
    assert not logged.report.package_dir.exists()  # the temporary package is gone once stored
    assert run.load_model().predict(3) == float(shell.ns["W"][3])
    return stored, blob


def test_the_local_store_links_a_captured_value_instead_of_copying_it(shell, tmp_path, monkeypatch):
    monkeypatch.delenv("VERTA_JUPYTER_PORTABLE", raising=False)  # the fast path, also in the portable pass
    stored, blob = _log(shell, tmp_path / "store")
    assert os.path.samefile(stored.buffers, blob)  # one inode: written once, never copied


def test_portable_mode_copies_into_the_store(shell, tmp_path, monkeypatch):
    monkeypatch.setenv("VERTA_JUPYTER_PORTABLE", "1")
    stored, blob = _log(shell, tmp_path / "store")
    assert not os.path.samefile(stored.buffers, blob)


def _other_file_system() -> Path | None:
    here = os.stat(tempfile.gettempdir()).st_dev
    for candidate in ("/dev/shm", "/run/user/%d" % getattr(os, "getuid", lambda: 0)()):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK) and os.stat(candidate).st_dev != here:
            return Path(candidate)
    return None


# Linux CI always has a tmpfs (/dev/shm): there a missing one fails instead of skipping
@pytest.mark.skipif(_other_file_system() is None and not (os.environ.get("CI") and sys.platform.startswith("linux")),
                    reason="needs a second file system (a tmpfs) for EXDEV")
def test_a_store_on_another_file_system_gets_a_copy(shell):
    assert _other_file_system() is not None, "no second file system: the EXDEV fallback is untested"
    with tempfile.TemporaryDirectory(dir=_other_file_system()) as other:
        stored, blob = _log(shell, Path(other) / "store")
        assert not os.path.samefile(stored.buffers, blob)


def test_trust_ends_when_the_file_changes_or_lies_outside_our_scratch(tmp_path):
    folder = scratch_dir("test")
    try:
        writer = HashingWriter(folder / "v.buf")
        writer.write(b"x" * 100)
        digest = writer.close()
        assert digest == hashlib.sha256(b"x" * 100).hexdigest() and in_own_scratch(folder / "v.buf")
        assert trusted_digest(folder / "v.buf") == digest
        with open(folder / "v.buf", "r+b") as f:  # same size, new bytes
            f.write(b"y")
        os.utime(folder / "v.buf", ns=(1, 1))
        assert trusted_digest(folder / "v.buf") is None
        (tmp_path / "store").mkdir()
        blobs = BlobFiles(tmp_path / "store")
        blobs.tmp.mkdir()
        blobs.dir.mkdir()
        got, size = blobs.put(folder / "v.buf")  # hashed again: the blob is named by its bytes
        assert got == hashlib.sha256(b"y" + b"x" * 99).hexdigest() and size == 100
        outside = tmp_path / "w.buf"
        other = HashingWriter(outside)
        other.write(b"z")
        other.close()
        assert not in_own_scratch(outside) and trusted_digest(outside) is None
    finally:
        remove_scratch(folder)


def test_spool_files_go_with_the_capture(shell):
    shell.run("import numpy as np\nW = np.ones(100_000)")
    shell.run(MODEL.format(body="float(W[0])"))
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    paths = [captured.pickled["W"].stream, captured.pickled["W"].buffers]
    assert all(p.exists() for p in paths)
    del captured
    gc.collect()
    assert not any(p.exists() for p in paths)


def test_manifest_digests_of_value_files_match_their_bytes(shell, tmp_path):
    _define(shell, tmp_path, "data-frame-mixed")
    package = capture_model(shell.ns["MyModel"], shell.ns).save(tmp_path / "pkg")
    files = read_manifest(package)["files"]
    for rel in ("values/0.pkl", "values/0.buf"):
        assert files[rel] == hashlib.sha256((package / rel).read_bytes()).hexdigest()


def test_the_digest_taken_while_writing_is_the_fingerprint_of_the_array(shell):
    from verta_jupyter.capture.fingerprint import fingerprint

    shell.run("import numpy as np\nW = np.random.default_rng(9).random(100_000)\nF = np.asfortranarray(np.ones((300, 300)))")
    shell.run(MODEL.format(body="float(W[0] + F[0, 0])"))
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    assert captured.pickled["W"].whole_array_digest(shell.ns["W"]) is not None  # taken from the writer
    assert captured.pickled["F"].whole_array_digest(shell.ns["F"]) is None  # F order: hashed itself
    hashed = fingerprint(shell.ns, ["W", "F"], {"__main__"})  # every byte hashed in memory
    assert captured.fingerprint["W"] == hashed["W"] and captured.fingerprint["F"] == hashed["F"]
    shell.ns["W"][0] += 1  # and a changed array is a different fingerprint
    assert fingerprint(shell.ns, ["W"], {"__main__"})["W"] != captured.fingerprint["W"]


def test_a_killed_kernels_value_spool_is_swept_by_the_next_process(tmp_path):
    from verta_jupyter.worker.scratch import sweep_stale

    code = ("import os\nfrom verta_jupyter.capture import values\n"
            "kept = values.dump_value(bytes(200_000), lambda obj: None)\n"
            "print(values._spool(), flush=True)\nos._exit(0)  # no atexit: as if killed\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    spool = Path(done.stdout.strip())
    assert done.returncode == 0 and spool.name.startswith("vj-values-") and any(spool.iterdir())
    assert spool in sweep_stale()
    assert not spool.exists()


def test_without_hard_links_a_temporary_package_gets_copies_that_verify(shell, monkeypatch):
    # a platform or file system with no hard links at all (os.link missing)
    shell.run("import numpy as np\nW = np.arange(100_000, dtype='float64')")
    shell.run(MODEL.format(body="float(W[data])"))
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    folder = scratch_dir("test")
    try:
        linked = captured.save(folder / "linked")
        assert os.path.samefile(linked / "values" / "0.buf", captured.pickled["W"].buffers)
        monkeypatch.delattr(os, "link")
        copied = captured.save(folder / "copied")
        assert not os.path.samefile(copied / "values" / "0.buf", captured.pickled["W"].buffers)
        assert verify_package(copied)["files"] == verify_package(linked)["files"]
        assert rebuild_in_subprocess(copied, sample_input=7).output == 7.0
    finally:
        remove_scratch(folder)


def test_a_disk_that_refuses_the_value_names_the_global_and_the_folder_and_leaves_nothing():
    pytest.importorskip("resource")  # POSIX: a file size limit stands in for a full disk
    code = '''
import os, resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
from IPython.core.interactiveshell import InteractiveShell
from verta_jupyter import capture_model
from verta_jupyter.capture import values
from verta_jupyter.errors import CaptureError
shell = InteractiveShell.instance()
shell.run_cell("import numpy as np\\nHUGE = np.ones(1_000_000)\\nclass M:\\n    def __init__(self, artifacts): pass\\n"
               "    def predict(self, data): return float(HUGE[0])\\n").raise_error()
spool = values._spool()
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
try:
    capture_model(shell.user_ns["M"], shell.user_ns)
except CaptureError as exc:
    print(str(exc))
print("LEFT", sorted(os.listdir(spool)))
'''
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "'HUGE'" in done.stdout and "cannot write the captured value to" in done.stdout, done.stdout
    assert "vj-values-" in done.stdout and "TMPDIR" in done.stdout
    assert done.stdout.strip().endswith("LEFT []")  # the part already written is removed


def test_a_collected_array_lends_its_digest_to_nothing(shell):
    shell.run("import numpy as np\nW = np.ones(100_000)")
    shell.run(MODEL.format(body="float(W[0])"))
    stored = capture_model(shell.ns["MyModel"], shell.ns).pickled["W"]
    assert stored.whole_array_digest(shell.ns["W"]) is not None
    shell.run("del W")
    gc.collect()
    assert stored.whole_array_digest(None) is None
    assert stored.whole_array_digest(__import__("numpy").ones(100_000)) is None  # equal, not the same
