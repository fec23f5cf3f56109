"""Abusive payloads and runaway models against real worker processes (issue 12, item 6).

Deep nesting, huge integers and huge strings, both ways, must end as a clear error that says
input or output, with the worker (or at least the next call) still working; a model that
allocates without bound is stopped at the memory limit with a message saying how to raise it,
and the kernel (this process) carries on.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

from served_models import dead
from verta_jupyter.errors import JsonConversionError, PredictError, WorkerCrashedError
from verta_jupyter.worker.client import InProcessPredictor, WorkerClient
from verta_jupyter.worker.limits import ENV_MEMORY, ENV_MESSAGE, ENV_PORTABLE

pytestmark = pytest.mark.timeout(180)

ABUSIVE = '''
import sys

class Abusive:
    """One abuse per request: {"do": ...}; anything else is measured and echoed back."""

    def __init__(self, artifacts):
        self.hoard = []

    def predict(self, data):
        do = data.get("do") if isinstance(data, dict) else None
        if do == "deep":
            out = []
            for _ in range(data["levels"]):
                out = [out]
            return out
        if do == "bigint":
            return {"n": 10 ** 5000}
        if do == "bigint_unlocked":
            sys.set_int_max_str_digits(0)
            return {"n": 10 ** 5000}
        if do == "string":
            return "x" * data["size"]
        if do == "shout_error":
            raise ValueError("x" * data["size"])
        if do == "hoard":  # a runaway model: 16 MiB blocks, every page touched, until stopped
            while True:
                self.hoard.append(b"x" * (16 << 20))
        return {"echo": data if not isinstance(data, str) else len(data)}
'''

NUMERIC = '''
import numpy as np
import pandas as pd

class Numeric:
    def __init__(self, artifacts):
        self.weights = np.random.default_rng(0).random((400, 400))

    def predict(self, data):
        frame = pd.DataFrame(data)
        product = self.weights @ self.weights  # wakes the BLAS thread pool
        return {"rows": len(frame), "trace": float(np.trace(product)) > 0}
'''


def _deep(levels: int) -> list:
    out: list = []
    for _ in range(levels):
        out = [out]
    return out


@pytest.fixture
def abusive(make_package):
    return make_package(ABUSIVE, "Abusive", sample={"x": 1})


@pytest.fixture
def worker(abusive):
    client = WorkerClient(abusive, timeout=60.0)
    client.start()
    yield client
    client.close()


def _still_serving(worker: WorkerClient, pid: int) -> None:
    assert worker.predict({"x": 1}) == {"echo": {"x": 1}}
    assert worker.pid == pid, "the worker was restarted: the abuse killed it"


# -- input ------------------------------------------------------------------------------------

def test_input_nested_100000_levels_is_an_input_error_and_the_worker_stays(worker):
    pid = worker.pid
    with pytest.raises(JsonConversionError, match=r"^data is nested too deeply") as info:
        worker.predict(_deep(100_000))
    assert info.value.kind == "input" and info.value.path == "data"
    _still_serving(worker, pid)


def test_input_integer_past_the_digit_limit_names_where_it_is(worker):
    pid = worker.pid
    with pytest.raises(JsonConversionError) as info:
        worker.predict({"rows": [1, 2, 10 ** 5000]})
    exc = info.value
    assert exc.kind == "input" and exc.path == 'data["rows"][2]'
    assert "more than 4300 digits" in str(exc) and "as a string" in str(exc)
    _still_serving(worker, pid)


def test_hostile_lines_sent_straight_to_the_worker_are_answered_not_fatal(abusive):
    """Bypass the kernel's checks: the worker itself must refuse what it cannot read."""
    lines = ["[" * 100_000 + "]" * 100_000, "1" * 5000, json.dumps({"x": 2})]
    done = subprocess.run([sys.executable, "-m", "verta_jupyter.worker", str(abusive)],
                          input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=60)
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and replies[0]["ok"]
    assert replies[1]["kind"] == "input" and "nested too deeply" in replies[1]["error"]
    assert replies[2]["kind"] == "input" and "4300 digits" in replies[2]["error"]
    assert replies[3]["ok"] and replies[3]["output"] == {"echo": {"x": 2}}
    assert "Traceback" not in done.stderr


def test_input_past_the_message_limit_is_refused_before_sending(abusive, monkeypatch):
    monkeypatch.setenv(ENV_MESSAGE, "1MiB")
    with WorkerClient(abusive) as worker:
        assert worker.message_limit == 1 << 20
        assert worker.predict("x" * 900_000) == {"echo": 900_000}
        pid = worker.pid
        with pytest.raises(JsonConversionError, match=r"the input is 2.0 MiB of JSON, more than "
                           r"the worker's message limit of 1.0 MiB") as info:
            worker.predict("x" * (2 << 20))
        assert info.value.kind == "input" and ENV_MESSAGE in str(info.value)
        _still_serving(worker, pid)


# -- output -----------------------------------------------------------------------------------

def test_output_nested_100000_levels_is_an_output_error_not_a_crash(worker):
    pid = worker.pid
    with pytest.raises(JsonConversionError, match=r"Abusive.predict returned a value JSON cannot "
                       r"carry: result is nested too deeply") as info:
        worker.predict({"do": "deep", "levels": 100_000})
    assert info.value.kind == "output" and not isinstance(info.value, WorkerCrashedError)
    _still_serving(worker, pid)


def test_output_just_too_deep_to_read_in_the_kernel_is_an_output_error(worker):
    """The worker encodes it from a shallow stack; the kernel reads it from a deep one."""
    pid = worker.pid
    limit = sys.getrecursionlimit()
    with pytest.raises(JsonConversionError, match="cannot be read here") as info:
        worker.predict({"do": "deep", "levels": limit - 20})
    assert info.value.kind == "output"
    _still_serving(worker, pid)


def test_output_integer_past_the_digit_limit_names_its_path(worker):
    pid = worker.pid
    with pytest.raises(JsonConversionError) as info:
        worker.predict({"do": "bigint"})
    exc = info.value
    assert exc.kind == "output" and exc.path == 'result["n"]' and exc.type_name == "int"
    assert 'result["n"] is an integer with more than 4300 digits' in str(exc)
    # a model that lifts Python's limit for itself still cannot make the kernel read it
    with pytest.raises(JsonConversionError, match="cannot be read here.*4300 digits") as info:
        worker.predict({"do": "bigint_unlocked"})
    assert info.value.kind == "output"
    _still_serving(worker, pid)


def test_output_past_the_message_limit_is_an_output_error(abusive):
    with WorkerClient(abusive, message_limit="1MiB") as worker:
        assert len(worker.predict({"do": "string", "size": 1_000_000})) == 1_000_000
        pid = worker.pid
        with pytest.raises(JsonConversionError, match=r"the output is 3.0 MiB of JSON, more than "
                           r"the worker's message limit of 1.0 MiB") as info:
            worker.predict({"do": "string", "size": 3 << 20})
        assert info.value.kind == "output" and "message_limit=" in str(info.value)
        _still_serving(worker, pid)


def test_a_model_error_with_a_huge_message_is_cut_not_fatal(worker):
    pid = worker.pid
    with pytest.raises(PredictError) as info:
        worker.predict({"do": "shout_error", "size": 50_000_000})
    exc = info.value
    assert exc.kind == "model" and exc.reason.startswith("ValueError: xxx")
    assert exc.reason.endswith("... (49,990,000 more characters)") and len(exc.reason) < 11_000
    assert len(exc.model_traceback) < 20_000 and "in predict" in exc.model_traceback
    _still_serving(worker, pid)


def test_in_process_predictor_gives_the_same_errors(abusive):
    predictor = InProcessPredictor(abusive)
    with pytest.raises(JsonConversionError, match="data is nested too deeply") as info:
        predictor.predict(_deep(100_000))
    assert info.value.kind == "input"
    with pytest.raises(JsonConversionError, match="result is nested too deeply") as info:
        predictor.predict({"do": "deep", "levels": 100_000})
    assert info.value.kind == "output"
    with pytest.raises(JsonConversionError, match=r'result\["n"\] is an integer') as info:
        predictor.predict({"do": "bigint"})
    assert info.value.kind == "output"
    assert predictor.predict({"x": 3}) == {"echo": {"x": 3}}


# -- the panel --------------------------------------------------------------------------------

def test_panel_refuses_hostile_json_text_clearly_and_keeps_working(abusive):
    from verta_jupyter.panel.widget import InvalidJsonError, PredictPanel

    panel = PredictPanel(abusive, sample_input={"x": 1})
    try:
        deep = "[" * 100_000 + "]" * 100_000
        with pytest.raises(InvalidJsonError, match="nested too deeply"):
            panel.predict_json(deep)
        with pytest.raises(InvalidJsonError, match=r"4300 digits.*send it as a string"):
            panel.predict_json('{"n": ' + "7" * 5000 + "}")
        panel.input.value = deep  # what typing it does: the observer must not blow up
        assert panel.error_kind == "invalid-json" and panel.predict_button.disabled
        assert "nested too deeply" in panel.error.value
        panel.input.value = '{"x": 5}'
        assert panel.error_kind is None and not panel.predict_button.disabled
        panel.click_predict()
        assert json.loads(panel.last_output_text) == {"echo": {"x": 5}}
        panel.input.value = '{"do": "deep", "levels": 100000}'
        panel.click_predict()
        assert panel.error_kind == "output" and "nested too deeply" in panel.error.value
    finally:
        panel.close()


# -- memory -----------------------------------------------------------------------------------

@pytest.mark.parametrize("portable", ["0", "1"], ids=["rlimit", "watchdog"])
def test_runaway_model_is_stopped_at_the_memory_limit_and_the_next_call_works(
        abusive, monkeypatch, portable):
    monkeypatch.setenv(ENV_PORTABLE, portable)
    kernel_before = psutil.Process().memory_info().rss
    with WorkerClient(abusive, timeout=60.0, memory_limit="300MiB") as worker:
        worker.start()
        pid = worker.pid
        assert worker._process.memory_enforcement == ("watchdog" if portable == "1" else "rlimit")
        with pytest.raises(WorkerCrashedError) as info:
            worker.predict({"do": "hoard"})
        exc = info.value
        assert exc.kind == "crash" and exc.exit == "memory limit of 300 MiB reached"
        assert "Abusive reached the worker's memory limit of 300 MiB during predict" in str(exc)
        assert "memory_limit=" in str(exc) and ENV_MEMORY in str(exc)
        assert dead(pid)
        assert worker.predict({"x": 1}) == {"echo": {"x": 1}} and worker.pid != pid
    grown = psutil.Process().memory_info().rss - kernel_before
    assert grown < 300 << 20, "the kernel took the allocation"


@pytest.mark.parametrize("portable", ["0", "1"], ids=["rlimit", "watchdog"])
def test_numpy_pandas_model_runs_under_a_modest_limit(make_package, monkeypatch, portable):
    """The limit counts memory used, not address space reserved (BLAS threads, arenas)."""
    monkeypatch.setenv(ENV_PORTABLE, portable)
    package = make_package(NUMERIC, "Numeric")
    with WorkerClient(package, timeout=60.0, memory_limit="768MiB") as worker:
        assert worker.predict({"a": [1, 2, 3]}) == {"rows": 3, "trace": True}


def test_memory_limit_defaults_to_a_share_of_physical_memory_and_reads_the_environment(
        abusive, monkeypatch):
    monkeypatch.delenv(ENV_MEMORY, raising=False)
    total = psutil.virtual_memory().total
    assert WorkerClient(abusive).memory_limit == int(total * 0.75)
    monkeypatch.setenv(ENV_MEMORY, "2GiB")
    assert WorkerClient(abusive).memory_limit == 2 << 30
    monkeypatch.setenv(ENV_MEMORY, "50%")
    assert WorkerClient(abusive).memory_limit == total // 2
    monkeypatch.setenv(ENV_MEMORY, "off")
    assert WorkerClient(abusive).memory_limit is None
    assert WorkerClient(abusive, memory_limit=512 << 20).memory_limit == 512 << 20
    monkeypatch.setenv(ENV_MEMORY, "4096")
    with pytest.raises(ValueError, match=rf"{ENV_MEMORY}='4096' is not a size: .*'4GiB'"):
        WorkerClient(abusive)


def test_no_memory_limit_when_switched_off(abusive, monkeypatch):
    monkeypatch.setenv(ENV_MEMORY, "off")
    with WorkerClient(abusive) as worker:
        worker.start()
        assert worker._process.memory_enforcement is None
        limits = psutil.Process(worker.pid).rlimit(psutil.RLIMIT_DATA)
        assert limits[0] == psutil.RLIM_INFINITY


def test_the_worker_never_loosens_a_limit_the_user_set_on_the_kernel(abusive):
    script = f"""
import resource, psutil
from verta_jupyter.worker.client import WorkerClient
resource.setrlimit(resource.RLIMIT_DATA, (3 << 30, resource.getrlimit(resource.RLIMIT_DATA)[1]))
with WorkerClient({str(abusive)!r}, memory_limit="8GiB") as worker:
    worker.start()
    print(psutil.Process(worker.pid).rlimit(psutil.RLIMIT_DATA)[0])
with WorkerClient({str(abusive)!r}, memory_limit="1GiB") as worker:
    worker.start()
    print(psutil.Process(worker.pid).rlimit(psutil.RLIMIT_DATA)[0])
"""
    # the rlimit path is the one under test: not the watchdog the portable pass would pick
    env = {**os.environ, "VERTA_JUPYTER_PORTABLE": "0"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(3 << 30), str(1 << 30)]


GREEDY = '''
class Greedy:
    def __init__(self, artifacts):
        self.table = b"x" * (2 << 30)  # 2 GiB at construction

    def predict(self, data):
        return len(self.table)
'''


@pytest.mark.parametrize("portable", ["0", "1"], ids=["rlimit", "watchdog"])
def test_a_model_too_big_to_build_under_the_limit_says_so(make_package, monkeypatch, portable):
    monkeypatch.setenv(ENV_PORTABLE, portable)
    package = make_package(GREEDY, "Greedy")  # captured, never constructed here
    with WorkerClient(package, memory_limit="512MiB") as worker:
        with pytest.raises(WorkerCrashedError, match="Greedy reached the worker's memory limit "
                           "of 512 MiB while loading the model") as info:
            worker.start()
        assert info.value.exit == "memory limit of 512 MiB reached" and not worker.running
