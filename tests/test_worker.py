"""The isolated predict worker: real packages (captured from a real IPython shell), real processes.

Faults (abort, hang, megabytes on stdout, exceptions, unconvertible output) must leave the
kernel side working and the next call answered.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from served_models import FAULTY, TABLE, dead
from verta_jupyter.errors import (JsonConversionError, PackageError, PredictError,
                                  WorkerCrashedError, WorkerTimeoutError)
from verta_jupyter.worker.client import InProcessPredictor, WorkerClient

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def faulty(make_package):
    return make_package(FAULTY, "Faulty", sample={"x": 1})


@pytest.fixture
def client(faulty):
    worker = WorkerClient(faulty, timeout=5.0)
    yield worker
    worker.close()


def _wait_until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_predict_round_trip_reports_timing_and_identity(client, faulty):
    assert client.predict({"x": 21}) == {"y": 42}
    assert client.pid != os.getpid() and client.running
    assert client.load_seconds > 0 and client.last_seconds > 0
    assert 0 <= client.last_model_seconds <= client.last_seconds
    assert client.info["class_name"] == "Faulty" and client.info["loaded_from"] == "model.py"
    assert len(client.info["digest"]) == 64 and client.info["package"] == str(faulty)


def test_model_exception_carries_the_model_traceback_and_worker_survives(client):
    client.start()
    pid = client.pid
    with pytest.raises(PredictError) as info:
        client.predict({"do": "raise"})
    exc = info.value
    assert type(exc) is PredictError and exc.kind == "model"
    assert str(exc) == "Faulty.predict raised KeyError: 'missing'"
    trace = exc.model_traceback
    assert "model.py" in trace and "in _lookup" in trace and "in predict" in trace
    assert "worker.py" not in trace and "jsonify.py" not in trace
    assert client.predict({"x": 1}) == {"y": 2} and client.pid == pid


def test_abort_is_a_crash_with_the_model_stack_and_the_next_call_restarts(client):
    client.start()
    pid = client.pid
    with pytest.raises(WorkerCrashedError) as info:
        client.predict({"do": "abort"})
    exc = info.value
    assert "SIGABRT" in str(exc) and exc.kind == "crash"
    assert "model.py" in exc.model_traceback and "in predict" in exc.model_traceback
    assert "worker.py" not in exc.model_traceback
    assert dead(pid)
    assert client.predict({"x": 3}) == {"y": 6}
    assert client.pid != pid and client.starts == 2


def test_exit_code_is_reported(client):
    with pytest.raises(WorkerCrashedError, match="exited with code 3"):
        client.predict({"do": "exit"})
    assert client.predict({"x": 1}) == {"y": 2}


def test_timeout_kills_the_process_group_and_the_next_call_works(faulty, tmp_path):
    pidfile = tmp_path / "child.pid"
    with WorkerClient(faulty, timeout=1.5) as worker:
        worker.start()
        pid = worker.pid
        started = time.monotonic()
        with pytest.raises(WorkerTimeoutError, match=r"did not answer within 1.5 s") as info:
            worker.predict({"do": "hang", "pidfile": str(pidfile)})
        assert time.monotonic() - started < 5.0
        assert isinstance(info.value, TimeoutError) and info.value.kind == "timeout"
        assert dead(pid) and not worker.running
        child = int(pidfile.read_text())
        assert _wait_until(lambda: dead(child)), "the model's own child outlived the timeout"
        assert worker.predict({"x": 5}) == {"y": 10}


def test_megabytes_on_stdout_neither_deadlock_nor_corrupt_the_reply(client):
    assert client.predict({"do": "shout", "megabytes": 20, "x": 7}) == {"y": 14}
    assert client.stderr_text().rstrip().endswith("x" * 1000)
    assert client.predict({"x": 1}) == {"y": 2}


def test_output_not_json_compatible_is_its_own_error(client):
    with pytest.raises(JsonConversionError) as info:
        client.predict({"do": "object"})
    assert info.value.kind == "output" and info.value.path == 'result["bad"]'
    assert "object" in str(info.value) and "Faulty.predict returned" in str(info.value)
    assert client.predict({"x": 2}) == {"y": 4}


def test_input_that_is_not_json_is_refused_before_sending(client):
    with pytest.raises(JsonConversionError, match=r"data\[0\]"):
        client.predict([object()])
    assert client.predict({"x": 2}) == {"y": 4}


def test_dataframe_annotation_artifacts_and_known_types(make_package, tmp_path):
    scale = tmp_path / "scale.txt"
    scale.write_text("10")
    package = make_package(TABLE, "Table", artifact_keys=["scale"])
    with WorkerClient(package, artifacts={"scale": scale}) as worker:
        out = worker.predict([{"a": 1, "b": 2.5}, {"a": 2, "b": None}])
    assert out == [{"a": 1, "b": 2.5, "total": 35.0, "when": "2024-01-01T00:00:00"},
                   {"a": 2, "b": None, "total": None, "when": "2024-01-01T00:00:00"}]


def test_construction_failure_is_a_load_error_with_traceback(make_package, tmp_path):
    package = make_package(TABLE, "Table", artifact_keys=["scale"])
    with WorkerClient(package, artifacts={"scale": tmp_path / "absent.txt"}) as worker:
        with pytest.raises(PredictError) as info:
            worker.predict([{"a": 1, "b": 2}])
        assert info.value.kind == "load" and "could not be built" in str(info.value)
        assert "in __init__" in info.value.model_traceback and not worker.running


def test_a_package_swapped_after_it_was_opened_is_refused_not_served(make_package, tmp_path):
    """The kernel checked one package (for a stored model: against the store's digest); if the
    folder is replaced with another valid package before the worker builds it, the worker
    refuses it rather than serving a model nobody checked."""
    checked = make_package("class Swap:\n    def __init__(self, artifacts): pass\n"
                           "    def predict(self, data): return 'checked'\n", "Swap")
    other = make_package("class Swap:\n    def __init__(self, artifacts): pass\n"
                         "    def predict(self, data): return 'swapped in'\n", "Swap")
    worker = WorkerClient(checked)
    shutil.rmtree(checked)
    shutil.copytree(other, checked)
    with worker, pytest.raises(PackageError, match="changed after it was opened") as info:
        worker.predict(1)
    assert str(checked) in str(info.value) and "Fix __init__" not in str(info.value)
    assert not worker.running


def test_model_py_failing_as_it_runs_is_the_models_load_error_with_its_traceback(make_package,
                                                                                 tmp_path):
    """Not a refused package: the model's own code raised while model.py ran (here its class
    body reads a file that is gone), so the error keeps the model's traceback."""
    data = tmp_path / "vocab.txt"
    data.write_text("a b")
    package = make_package(f"class Vocab:\n    WORDS = open({str(data)!r}).read().split()\n"
                           "    def __init__(self, artifacts): pass\n"
                           "    def predict(self, data): return self.WORDS\n", "Vocab")
    data.unlink()
    with WorkerClient(package) as worker, pytest.raises(PredictError) as info:
        worker.predict(1)
    assert info.value.kind == "load" and "FileNotFoundError" in str(info.value)
    assert "model.py" in info.value.model_traceback and "WORDS = open(" in info.value.model_traceback


def test_not_a_package_fails_fast(tmp_path):
    with pytest.raises(PackageError, match="verta_model.json is missing"):
        WorkerClient(tmp_path)


def test_close_stops_the_process_and_a_later_call_starts_again(client):
    client.start()
    pid = client.pid
    client.close()
    assert dead(pid) and not client.running
    assert client.predict({"x": 1}) == {"y": 2}


def test_in_process_predictor_has_the_same_interface(shell, faulty):
    for predictor in (InProcessPredictor(faulty), InProcessPredictor(shell.ns["Faulty"])):
        assert predictor.predict({"x": 4}) == {"y": 8}
        assert predictor.load_seconds is not None and predictor.last_seconds is not None
        with pytest.raises(PredictError) as info:
            predictor.predict({"do": "raise"})
        assert "in _lookup" in info.value.model_traceback
        assert "worker.py" not in info.value.model_traceback
        with pytest.raises(JsonConversionError, match=r'result\["bad"\]'):
            predictor.predict({"do": "object"})
        assert predictor.info["class_name"] == "Faulty"
        predictor.close()


def test_command_line_worker_speaks_json_lines_and_keeps_prints_off_stdout(faulty):
    requests = "\n".join(json.dumps(r) for r in [
        {"data": {"x": 2}}, {"do": "shout", "megabytes": 1, "x": 1}, {"data": {"do": "raise"}}])
    done = subprocess.run([sys.executable, "-m", "verta_jupyter.worker", str(faulty)],
                          input=requests + "\n", capture_output=True, text=True, timeout=60)
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0
    assert replies[0]["ok"] and replies[0]["class_name"] == "Faulty"
    assert replies[1] == {"ok": True, "output": {"y": 4}, "seconds": replies[1]["seconds"]}
    assert replies[2]["output"] == {"y": 2}
    assert replies[3]["kind"] == "model" and "KeyError" in replies[3]["error"]
    assert "x" * 1000 in done.stderr


def test_interrupting_a_call_leaves_no_stale_reply_for_the_next(faulty, tmp_path):
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with WorkerClient(faulty, timeout=30.0) as worker:
            worker.start()
            pid = worker.pid
            signal.setitimer(signal.ITIMER_REAL, 0.5)  # what "interrupt kernel" does
            with pytest.raises(KeyboardInterrupt):
                worker.predict({"do": "hang", "pidfile": str(tmp_path / "pid")})
            assert dead(pid)
            assert worker.predict({"x": 8}) == {"y": 16}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
