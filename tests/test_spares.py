"""A spare worker makes the proof a message, without weakening it: the spare is a fresh
interpreter that never ran notebook code, used only while it still matches our settings."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from verta_jupyter.worker import spares
from verta_jupyter.worker.client import WorkerClient
from verta_jupyter.worker.limits import memory_limit, message_limit
from verta_jupyter.worker.rebuild import rebuild_in_subprocess

SOURCE = """
import os

class WhoAmI:
    def __init__(self, artifacts):
        self.pid = os.getpid()

    def predict(self, data):
        return {"pid": self.pid, "seen": data}
"""


@pytest.fixture(autouse=True)
def no_spares_around():
    spares.stop_all()
    yield
    spares.stop_all()


@pytest.fixture
def package(make_package):
    return make_package(SOURCE, "WhoAmI")


def _prime_now() -> int:
    spares.prime(sys.executable, memory_limit(None), message_limit(None))
    (pid,) = spares.ready_pids()
    return pid


def test_a_start_takes_the_ready_spare_and_another_is_made(package):
    spare = _prime_now()
    with WorkerClient(package) as client:
        assert client.predict(1) == {"pid": spare, "seen": 1}
        deadline = time.monotonic() + 30
        while not spares.ready_pids() and time.monotonic() < deadline:
            time.sleep(0.01)  # the refill starts in a background thread
        assert spares.ready_pids() and spare not in spares.ready_pids()


def test_the_rebuild_proof_runs_in_a_spare_and_still_fails_on_notebook_state(shell, tmp_path):
    """A spare never ran the notebook: state the package does not carry is still missing there."""
    import math

    from verta_jupyter import capture_model

    shell.run("import math\nmath.SCALE = 3\nclass Scaled:\n    def __init__(self, artifacts):\n"
              "        pass\n    def predict(self, data):\n        return data * getattr(math, 'SCALE', 1)")
    try:
        path = capture_model(shell.ns["Scaled"], shell.ns).save(tmp_path / "pkg")
        _prime_now()
        result = rebuild_in_subprocess(path, sample_input=2)
        assert result.ok and result.output == 2  # not 6: the spare has no notebook state
    finally:
        del math.SCALE


def test_a_spare_from_another_environment_is_never_used(package, monkeypatch):
    spare = _prime_now()
    monkeypatch.setenv("VJ_SOMETHING_THE_NOTEBOOK_SET", "1")
    with WorkerClient(package) as client:
        assert client.predict(0)["pid"] != spare
    assert spare not in spares.ready_pids()


def test_a_dead_spare_is_replaced(package):
    spare = _prime_now()
    os.kill(spare, 9)
    deadline = time.monotonic() + 10
    while spares._ready[0].popen.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with WorkerClient(package) as client:
        assert client.predict(5) == {"pid": client.pid, "seen": 5} and client.pid != spare


def test_spares_are_stopped_when_the_kernel_exits():
    code = ("import sys, time\nfrom verta_jupyter.worker.client import prime_spare\n"
            "from verta_jupyter.worker import spares\nprime_spare()\n"
            "deadline = time.monotonic() + 30\n"
            "while not spares.ready_pids() and time.monotonic() < deadline: time.sleep(0.01)\n"
            "print(spares.ready_pids()[0])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.strip())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_loading_the_extension_primes_a_spare(shell):
    shell.run("%reload_ext verta_jupyter")
    deadline = time.monotonic() + 30
    while not spares.ready_pids() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert spares.ready_pids()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes (its parent, the exited kernel, cannot reap it)
    try:
        with open(f"/proc/{pid}/status") as status:
            return "zombie" not in status.read()
    except OSError:
        return False


MODULES_SEEN = """
import sys

class ModulesSeen:
    def __init__(self, artifacts):
        self.seen = sorted({name.split(".")[0] for name in sys.modules})

    def predict(self, data):
        return self.seen
"""


def test_a_spare_imports_ahead_only_our_own_code_and_the_standard_library(make_package):
    """A spare imports verta_jupyter's loader while it waits (so the proof is a message); that
    must never bring in third-party code a model could silently lean on."""
    package = make_package(MODULES_SEEN, "ModulesSeen")
    _prime_now()
    with WorkerClient(package) as client:
        seen = set(client.predict(None))
    assert "verta_jupyter" in seen
    outside = {name for name in seen - set(sys.stdlib_module_names) - {"verta_jupyter"}
               if not name.startswith("_")}
    ours = {"psutil", "orjson"}  # verta_jupyter's own dependencies (orjson: the [fast] extra)
    assert outside <= ours, f"a spare imported {sorted(outside)} before its job"
