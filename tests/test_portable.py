"""The worker's portable paths, exercised here (issue 13, item 1: worker part).

With VERTA_JUPYTER_PORTABLE=1 the worker takes the paths it takes on Windows and macOS even on
Linux: reader/writer threads instead of polling the pipes, psutil's process-tree kill instead
of killpg, the psutil memory watchdog instead of setrlimit. The worker suite's key cases run
again here under that switch (imported, so they are the same tests, not copies).
"""
from __future__ import annotations

import time

import psutil
import pytest

from served_models import dead
from test_worker import (client, faulty,  # noqa: F401 - fixtures the imported tests use
                         test_abort_is_a_crash_with_the_model_stack_and_the_next_call_restarts,
                         test_close_stops_the_process_and_a_later_call_starts_again,
                         test_exit_code_is_reported,
                         test_interrupting_a_call_leaves_no_stale_reply_for_the_next,
                         test_megabytes_on_stdout_neither_deadlock_nor_corrupt_the_reply,
                         test_model_exception_carries_the_model_traceback_and_worker_survives,
                         test_predict_round_trip_reports_timing_and_identity,
                         test_timeout_kills_the_process_group_and_the_next_call_works)
from verta_jupyter.errors import WorkerTimeoutError
from verta_jupyter.worker import process
from verta_jupyter.worker.client import WorkerClient
from verta_jupyter.worker.limits import ENV_PORTABLE

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def portable_paths(monkeypatch):
    monkeypatch.setenv(ENV_PORTABLE, "1")


def test_the_portable_paths_are_the_ones_taken(client):  # noqa: F811 - the imported fixture
    client.start()
    assert isinstance(client._process.pipes, process._ThreadedPipes)
    assert client._process.memory_enforcement == "watchdog"
    assert psutil.Process(client.pid).rlimit(psutil.RLIMIT_DATA)[0] == psutil.RLIM_INFINITY


ESCAPER = """
import subprocess, sys, time

class Escaper:
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                 start_new_session=True)  # leaves the worker's session
        with open(data["pidfile"], "w") as f:
            f.write(str(child.pid))
        time.sleep(600)
"""


@pytest.mark.parametrize("switch", ["1", "0"], ids=["portable", "posix"])
def test_timeout_stops_a_child_that_left_the_workers_session(make_package, tmp_path, monkeypatch,
                                                             switch):
    """killpg alone misses a child that called setsid (and Windows has no sessions at all):
    the tree walk (psutil) stops it on every path."""
    monkeypatch.setenv(ENV_PORTABLE, switch)
    package = make_package(ESCAPER, "Escaper")
    pidfile = tmp_path / "child.pid"
    with WorkerClient(package, timeout=1.5) as worker:
        worker.start()
        pid = worker.pid
        with pytest.raises(WorkerTimeoutError):
            worker.predict({"pidfile": str(pidfile)})
        assert dead(pid)
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while not dead(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dead(child), "the model's child outlived the timeout"


def test_the_switch_is_read_at_each_start(faulty, monkeypatch):  # noqa: F811
    monkeypatch.setenv(ENV_PORTABLE, "0")
    with WorkerClient(faulty) as worker:
        worker.start()
        assert isinstance(worker._process.pipes, process._PolledPipes)
        assert worker._process.memory_enforcement == "rlimit"
        monkeypatch.setenv(ENV_PORTABLE, "1")
        worker.close()
        assert worker.predict({"x": 1}) == {"y": 2}
        assert isinstance(worker._process.pipes, process._ThreadedPipes)



NO_PSUTIL = r"""
import json, os, sys, tempfile
sys.modules["psutil"] = None  # an environment without psutil: importing it fails
from verta_jupyter.errors import WorkerTimeoutError
from verta_jupyter.worker.client import WorkerClient
from verta_jupyter.worker.scratch import sweep_stale

package, pidfile, stale = sys.argv[1:]
worker = WorkerClient(package, timeout=1.5)
result = {"limit": worker.memory_limit, "answer": worker.predict({"x": 2}),
          "enforcement": worker._process.memory_enforcement, "pid": worker.pid}
try:
    worker.predict({"do": "hang", "pidfile": pidfile})
except WorkerTimeoutError:
    result["timeout"] = True
worker.close()
result["swept"] = [str(p) for p in sweep_stale(os.path.dirname(stale))]
print(json.dumps(result))
"""


def test_without_psutil_the_worker_still_works_and_stops_its_tree(faulty, tmp_path):  # noqa: F811
    """psutil is a dependency, but a hand-made environment may lack it: POSIX then falls back
    to the session kill, sysconf for physical memory and kill(pid, 0) for the sweep."""
    import json
    import os
    import subprocess
    import sys

    pidfile, stale = tmp_path / "child.pid", tmp_path / "vj-worker-999999999-gone01"
    stale.mkdir()
    done = subprocess.run([sys.executable, "-c", NO_PSUTIL, str(faulty), str(pidfile), str(stale)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, ENV_PORTABLE: "1"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    pages = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert result["limit"] == int(pages * 0.75) and result["enforcement"] is None
    assert result["answer"] == {"y": 4} and result["timeout"] and dead(result["pid"])
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while not dead(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dead(child), "the model's child outlived the timeout"
    assert result["swept"] == [str(stale)] and not stale.exists()
