"""`run.export_mlflow(path)` and `verta-jupyter model export-mlflow`: a logged model (with its
artifacts) as an MLflow model directory that the real mlflow package loads and predicts with."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlflow_server import MLFLOW_PYTHON, mlflow_bin  # noqa: F401
from verta_jupyter import Client

pytestmark = pytest.mark.mlflow

MODEL = '''
class Greeter:
    def __init__(self, artifacts):
        with open(artifacts["greeting"]) as f:
            self.greeting = f.read().strip()

    def predict(self, data):
        return {"text": f"{self.greeting}, {data['name']}!"}
'''


@pytest.fixture
def logged_run(shell, tmp_path):
    shell.run(MODEL)
    (tmp_path / "greeting.txt").write_text("Hello")
    run = Client(store=tmp_path / "store").set_experiment_run("export")
    run.log_artifact("greeting", str(tmp_path / "greeting.txt"))
    run.log_model(shell.ns["Greeter"], artifacts=["greeting"], sample_input={"name": "Ada"},
                  namespace=shell.ns)
    return run


def mlflow_predict(model_dir, data) -> object:
    script = ("import json, sys, warnings\nwarnings.simplefilter('ignore')\nimport mlflow\n"
              "print(json.dumps(mlflow.pyfunc.load_model(sys.argv[1]).predict(json.loads(sys.argv[2]))))")
    done = subprocess.run([str(MLFLOW_PYTHON), "-c", script, str(model_dir), json.dumps(data)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_run_export_mlflow_loads_with_mlflow(logged_run, tmp_path, mlflow_bin):
    path = logged_run.export_mlflow(tmp_path / "exported")
    expected = logged_run.load_model().predict({"name": "Grace"})
    assert expected == {"text": "Hello, Grace!"}
    assert mlflow_predict(path, {"name": "Grace"}) == expected


def test_cli_exports_a_run(logged_run, tmp_path, mlflow_bin):
    dest = tmp_path / "from-cli"
    done = subprocess.run([sys.executable, "-m", "verta_jupyter.cli", "model", "export-mlflow",
                           logged_run.id, str(dest), "--store", str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (dest / "MLmodel").exists() and done.stdout.strip() == str(dest.resolve())
    assert mlflow_predict(dest, {"name": "Lin"}) == {"text": "Hello, Lin!"}


def test_cli_export_into_an_existing_folder_is_a_clear_error(logged_run, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("mine")
    done = subprocess.run([sys.executable, "-m", "verta_jupyter.cli", "model", "export-mlflow",
                           logged_run.id, str(tmp_path / "taken"), "--store", str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "taken" in done.stderr
    assert (tmp_path / "taken" / "x").read_text() == "mine"
