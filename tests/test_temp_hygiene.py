"""Temp hygiene (issue 12, item 8): nothing of ours piles up in the temp directory.

Validated packages go as soon as they are stored (or validation fails), a worker's folder goes
with the worker, and the folders of killed processes are swept by the next process, with real
processes killed by SIGKILL (no atexit, no finally).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from served_models import FAULTY
from verta_jupyter.errors import ValidationError, WorkerTimeoutError
from verta_jupyter.worker.client import WorkerClient
from verta_jupyter.worker.scratch import remove_scratch, scratch_dir, sweep_stale

pytestmark = pytest.mark.timeout(180)

TEMP = Path(tempfile.gettempdir())

# A process that makes a scratch folder the way a kernel does, then dies without clean-up.
_KILLED = """
import os, signal, sys
from verta_jupyter.worker.scratch import scratch_dir
folder = scratch_dir(sys.argv[1])
(folder / "model.py").write_text("x = 1")
print(folder, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_process_folder(kind: str = "packages") -> Path:
    done = subprocess.run([sys.executable, "-c", _KILLED, kind], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == -9, done.stderr
    folder = Path(done.stdout.strip())
    assert folder.is_dir() and folder.name.startswith(f"vj-{kind}-")
    return folder


def _ours(kind: str) -> list[Path]:
    return sorted(TEMP.glob(f"vj-{kind}-{os.getpid()}-*"))


def test_the_next_process_sweeps_the_folders_of_a_killed_one():
    packages, worker = _killed_process_folder("packages"), _killed_process_folder("worker")
    done = subprocess.run([sys.executable, "-c", "from verta_jupyter.worker.scratch import "
                           "scratch_dir; print(scratch_dir('worker'))"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not packages.exists() and not worker.exists()
    shutil.rmtree(done.stdout.strip())  # that process's own folder (it exited at once)


def test_sweep_keeps_live_owners_and_what_is_not_ours(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.05)  # the folder below is younger than the sleeper, as its own would be
        live = tmp_path / f"vj-worker-{sleeper.pid}-abc123"
        recycled = tmp_path / f"vj-worker-{sleeper.pid}-old999"  # made before that pid existed
        mine = tmp_path / f"vj-packages-{os.getpid()}-me0001"
        dead_owner = tmp_path / "vj-packages-999999999-gone01"
        other = tmp_path / "vj-notes-kept"
        a_file = tmp_path / "vj-worker-999999998-file01"
        for folder in (live, recycled, mine, dead_owner, other):
            folder.mkdir()
            (folder / "f").write_text("x")
        a_file.write_text("not a folder")
        long_ago = time.time() - 3600
        os.utime(recycled, (long_ago, long_ago))
        removed = sweep_stale(tmp_path)
        assert sorted(removed) == sorted([recycled, dead_owner])
        assert live.is_dir() and mine.is_dir() and other.is_dir() and a_file.is_file()
        assert not recycled.exists() and not dead_owner.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_remove_scratch_touches_only_this_processes_scratch(tmp_path):
    user_folder = tmp_path / "my-package"
    user_folder.mkdir()
    remove_scratch(user_folder)
    remove_scratch(None)
    assert user_folder.is_dir()
    folder = scratch_dir("packages")
    (folder / "Model-x").mkdir()
    remove_scratch(folder / "Model-x")
    assert folder.is_dir() and not (folder / "Model-x").exists()
    remove_scratch(folder)
    assert not folder.exists()


def test_the_workers_folder_goes_with_the_worker(make_package):
    package = make_package(FAULTY, "Faulty")
    with WorkerClient(package, timeout=1.5) as worker:
        worker.start()
        first = Path(worker._process.cwd)
        assert first.is_dir() and first.name.startswith(f"vj-worker-{os.getpid()}-")
        with pytest.raises(Exception):
            worker.predict({"do": "abort"})  # a crash
        assert not first.exists()
        worker.start()
        second = Path(worker._process.cwd)
        with pytest.raises(WorkerTimeoutError):
            worker.predict({"do": "hang", "pidfile": os.devnull})
        assert not second.exists()
        worker.predict({"x": 1})
        third = Path(worker._process.cwd)
    assert not third.exists()


MODEL = """
class Doubler:
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return {"y": data["x"] * 2}
"""

DRIFTING = """
import os

class Drifting:
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return {"pid": os.getpid()}  # differs after the rebuild: validation fails (VJ502)
"""


def _packages_left() -> list[Path]:
    return [p for root in _ours("packages") for p in root.iterdir()]


def test_a_logged_package_leaves_no_copy_in_temp(shell, tmp_path):
    from verta_jupyter import Client

    shell.run(MODEL)
    before = _packages_left()
    run = Client(store=tmp_path / "store").set_experiment_run("hygiene")
    logged = run.log_model(shell.ns["Doubler"], sample_input={"x": 2},
                           namespace=shell.ns)
    assert _packages_left() == before
    assert logged.report.ok and run.load_model().predict({"x": 3}) == {"y": 6}


def test_a_package_that_fails_validation_leaves_no_copy_in_temp(shell, tmp_path):
    from verta_jupyter import Client

    shell.run(DRIFTING)
    before = _packages_left()
    run = Client(store=tmp_path / "store").set_experiment_run("hygiene")
    with pytest.raises(ValidationError, match="VJ502"):
        run.log_model(shell.ns["Drifting"], sample_input={"x": 2}, namespace=shell.ns)
    assert _packages_left() == before


def test_a_worker_that_cannot_start_leaves_no_folder(make_package, tmp_path):
    package = make_package(FAULTY, "Faulty")
    before = _ours("worker")
    with pytest.raises(OSError):
        WorkerClient(package, python=str(tmp_path / "no-such-python")).start()
    assert _ours("worker") == before


def test_a_panels_folder_is_named_by_its_owner(make_package):
    from verta_jupyter.panel.widget import PredictPanel

    panel = PredictPanel(make_package(FAULTY, "Faulty"))
    try:
        assert Path(panel._tmp.name).name.startswith(f"vj-panel-{os.getpid()}-")
    finally:
        panel.close()
    assert not Path(panel._tmp.name).exists()
