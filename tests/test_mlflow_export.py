"""MLflow pyfunc export, checked with the real mlflow package (in .venv-mlflow): load + predict,
and a real `mlflow models serve --env-manager local` answering `/invocations` on 127.0.0.1."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
import requests

from mlflow_server import (MLFLOW_BIN, MLFLOW_PYTHON, free_port, mlflow_bin,  # noqa: F401
                           mlflow_server)
from verta_jupyter import capture_model, load_package
from verta_jupyter.errors import PackageError
from verta_jupyter.package.mlflow_export import export_mlflow
from verta_jupyter.worker.rebuild import rebuild_in_subprocess

pytestmark = pytest.mark.mlflow

MODEL = '''
import collections
VOWELS = frozenset("aeiou")
BIGRAMS = collections.Counter(zip("abracadabra", "abracadabra"[1:]))

def count_vowels(text):
    return sum(ch in VOWELS for ch in text.lower())

class WordModel:
    def __init__(self, artifacts):
        with open(artifacts["vocab"]) as f:
            self.vocab = [w.strip() for w in f if w.strip()]

    def predict(self, data):
        items = data if isinstance(data, list) else [data]
        out = []
        for item in items:
            text = item["text"] if isinstance(item, dict) else str(item)
            out.append({"vowels": count_vowels(text), "known": [w for w in self.vocab if w in text],
                        "ab": BIGRAMS[("a", "b")]})
        return out if isinstance(data, list) else out[0]
'''
INPUTS = [{"text": "the cat sat"}, [{"text": "dog"}, {"text": "a cat and a dog"}], ["cat", "bird"],
          "plain string", {"text": ""}]


@pytest.fixture
def package(shell, tmp_path):
    shell.run(MODEL)
    captured = capture_model(shell.ns["WordModel"], shell.ns)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("cat\ndog\nbird\n")
    pkg = captured.save(tmp_path / "pkg", sample_input={"text": "the cat sat"},
                        artifact_keys=["vocab"])
    return pkg, {"vocab": str(vocab)}


@pytest.fixture
def exported(package, tmp_path):
    pkg, artifacts = package
    return export_mlflow(pkg, tmp_path / "mlflow_model", artifacts=artifacts)


def ours(package, data):
    pkg, artifacts = package
    return load_package(pkg)(artifacts=artifacts).predict(data)


def test_layout_is_an_mlflow_model(exported):
    names = {p.name for p in exported.iterdir()}
    assert {"MLmodel", "verta_model_entry.py", "verta_package", "artifacts", "requirements.txt",
            "python_env.yaml", "input_example.json", "serving_input_example.json"} <= names
    mlmodel = (exported / "MLmodel").read_text()
    assert "loader_module: mlflow.pyfunc.loaders.code_model" in mlmodel
    assert "mlflow" in (exported / "requirements.txt").read_text()
    assert json.loads((exported / "serving_input_example.json").read_text()) == {
        "inputs": {"text": "the cat sat"}}


def test_pyfunc_load_model_predicts_like_our_rebuilt_model(package, exported, mlflow_bin):
    script = ("import json, sys, warnings\nwarnings.simplefilter('ignore')\nimport mlflow\n"
              "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
              "print(json.dumps([m.predict(x) for x in json.loads(sys.argv[2])]))\n")
    done = subprocess.run([str(MLFLOW_PYTHON), "-c", script, str(exported), json.dumps(INPUTS)],
                          capture_output=True, text=True, timeout=120, cwd=exported.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == [ours(package, x) for x in INPUTS]
    # ... and like the rebuild in a fresh process, which is what validation compares against
    pkg, artifacts = package
    fresh = rebuild_in_subprocess(pkg, artifacts=artifacts, sample_input=INPUTS[0])
    assert fresh.ok, fresh.error
    assert got[0] == fresh.output


def test_mlflow_models_serve_answers_invocations(package, exported, mlflow_bin):
    port = free_port()
    env = {**os.environ, "PATH": f"{MLFLOW_BIN.parent}{os.pathsep}{os.environ['PATH']}"}
    log = open(exported.parent / "serve.log", "wb")
    proc = subprocess.Popen([str(MLFLOW_BIN), "models", "serve", "-m", str(exported),
                             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_ping(proc, url, exported.parent / "serve.log")
        for data in INPUTS:
            response = requests.post(f"{url}/invocations", json={"inputs": data}, timeout=30)
            assert response.status_code == 200, response.text
            assert response.json() == {"predictions": ours(package, data)}
        from verta_jupyter.panel.endpoint import Endpoint  # the same server through our client

        assert Endpoint(f"{url}/invocations").predict(INPUTS[1]) == ours(package, INPUTS[1])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()


def _wait_for_ping(proc, url, log_path, timeout=90.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        try:
            proc.wait(timeout=0.25)  # returns early only if the server died
        except subprocess.TimeoutExpired:
            continue
        break
    pytest.fail(f"mlflow models serve did not answer /ping:\n{log_path.read_text()[-3000:]}")


def test_a_missing_artifact_is_refused(package, tmp_path):
    pkg, _ = package
    with pytest.raises(PackageError, match="vocab"):
        export_mlflow(pkg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_existing_directory_is_not_overwritten(package, tmp_path):
    pkg, artifacts = package
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(PackageError, match="already exists"):
        export_mlflow(pkg, tmp_path / "out", artifacts=artifacts)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_a_tampered_export_refuses_to_load(exported, mlflow_bin):
    model_py = exported / "verta_package" / "model.py"
    model_py.write_text(model_py.read_text() + "\nVOWELS = frozenset()\n")
    done = subprocess.run([str(MLFLOW_PYTHON), "-c",
                           "import sys, mlflow; mlflow.pyfunc.load_model(sys.argv[1])", str(exported)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "modified after export" in done.stderr


def test_a_model_logged_to_an_mlflow_store_loads_with_mlflow_tools(mlflow_server, tmp_path):
    """Logging to an MLflow store writes the MLflow model beside our package: MLflow users load
    `runs:/<id>` and `models:/<name>/<version>` with their own tools."""
    import uuid

    from store_contract import EchoModel
    from verta_jupyter import Client
    from verta_jupyter.tracking.stores.mlflow.store import MlflowStore

    store = MlflowStore(mlflow_server.url, namespace=f"x{uuid.uuid4().hex[:8]}")
    client = Client(store=store)
    run = client.set_experiment_run("exported")
    (tmp_path / "v.json").write_text('["a", "b", "c"]')
    run.log_artifact("vocab", str(tmp_path / "v.json"))
    run.log_model(EchoModel, artifacts=["vocab"], sample_input={"words": ["a"]})
    version = client.get_or_create_registered_model("echo").create_version_from_run(run)
    data = {"words": ["a", "q", "c"]}
    expected = run.load_model().predict(data)
    model_name = store.server.model_prefix + "echo"
    script = ("import json, sys, warnings\nwarnings.simplefilter('ignore')\nimport mlflow\n"
              "print(json.dumps([mlflow.pyfunc.load_model(uri).predict(json.loads(sys.argv[1]))"
              " for uri in sys.argv[2:]]))\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url}
    done = subprocess.run([str(MLFLOW_PYTHON), "-c", script, json.dumps(data), f"runs:/{run.id}/",
                           f"models:/{model_name}/{version.name}"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [expected, expected]
