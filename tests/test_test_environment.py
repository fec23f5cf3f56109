"""The suite never writes to a developer's real tracking server: with MLFLOW_TRACKING_URI,
VERTA_JUPYTER_STORE and MLflow credentials pointing at a (recording) server, a pytest run over
this suite's conftest sends it nothing, from the test process or from the worker and CLI
processes the tests start; a test that needs a variable still sets it."""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

TESTS = Path(__file__).resolve().parent

INNER = '''
import os, subprocess, sys

from verta_jupyter import Client
from verta_jupyter.worker.process import child_environment

NAMES = %(names)r


def test_the_variables_are_gone():
    assert [n for n in NAMES if n in os.environ] == []


def test_client_defaults_to_the_embedded_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = Client()
    client.set_experiment_run("r").log_metric("acc", 1.0)
    assert client.store.location == str(tmp_path / "verta_store")


def test_a_worker_process_does_not_get_them():
    out = subprocess.run([sys.executable, "-c", "import os, json; print(json.dumps("
                          "sorted(n for n in os.environ if n in %(names)r)))"],
                         env=child_environment(), capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_the_cli_uses_the_default_store(tmp_path):
    out = subprocess.run([sys.executable, "-m", "verta_jupyter", "runs", "list"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert "127.0.0.1" not in out.stdout + out.stderr, out.stdout + out.stderr


def test_a_test_can_still_set_one(monkeypatch, tmp_path):
    monkeypatch.setenv("VERTA_JUPYTER_STORE", str(tmp_path / "chosen"))
    assert Client().store.location == str(tmp_path / "chosen")
'''

PLANTED = ("MLFLOW_TRACKING_URI", "VERTA_JUPYTER_STORE", "MLFLOW_TRACKING_TOKEN",
           "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_INSECURE_TLS")


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def _any(self):
        self.hits.append(f"{self.command} {self.path}")
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

    def log_message(self, *args):
        pass


def test_a_developers_tracking_variables_reach_no_test_and_no_child(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        inner = tmp_path / "test_inner.py"
        inner.write_text(INNER % {"names": PLANTED})
        env = {**os.environ, "PYTHONPATH": str(TESTS), "MLFLOW_TRACKING_URI": url,
               "VERTA_JUPYTER_STORE": url, "MLFLOW_TRACKING_TOKEN": "dev-token",
               "MLFLOW_TRACKING_USERNAME": "dev", "MLFLOW_TRACKING_PASSWORD": "dev-pw",
               "MLFLOW_TRACKING_INSECURE_TLS": "true"}
        # this suite's conftest as a plugin, over a file outside the suite's folder
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "-p", "conftest", str(inner)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
        server.server_close()
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "5 passed" in out.stdout, out.stdout[-2000:]
    assert _Recorder.hits == []  # not one request reached the developer's server
