"""The MLflow demo notebook runs top to bottom on a real kernel against a real `mlflow server` on
127.0.0.1: %%verta_model logs there, and a fresh process gets the model back from the server."""
from __future__ import annotations

import ast
import uuid

import pytest

from mlflow_server import mlflow_server  # noqa: F401 (pytest fixture)
from notebook_runner import NOTEBOOKS, execute, kernel_sandbox, printed  # noqa: F401 (fixture)

pytestmark = [pytest.mark.mlflow, pytest.mark.slow]


def test_mlflow_notebook_logs_to_the_server_and_rebuilds(kernel_sandbox, mlflow_server, monkeypatch):
    store = f"{mlflow_server.url}?namespace=nb-{uuid.uuid4().hex[:8]}"  # a fresh store on the shared server
    monkeypatch.setenv("VERTA_JUPYTER_STORE", store)
    cells = execute(NOTEBOOKS / "mlflow.ipynb", kernel_sandbox["work"])
    assert printed(cells, "store: ") == store
    assert any("Sentiment: logged to" in text for texts in cells for text in texts)
    assert ast.literal_eval(printed(cells, "fresh process: ")) == {"score": -1.0, "label": "negative"}
    run_id = printed(cells, "run: ")
    assert printed(cells, "with MLflow's own tools: ") == f"mlflow.pyfunc.load_model('runs:/{run_id}/')"
