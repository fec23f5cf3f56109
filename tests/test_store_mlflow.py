"""MlflowStore against a real `mlflow server` on 127.0.0.1: the store contract unchanged, then
what only a network store has (faults: a server stopped mid-upload, a 5xx burst, wrong
credentials, a server that never answers; naming; secrets)."""
from __future__ import annotations

import uuid

import pytest

from mlflow_server import mlflow_server, own_mlflow_server  # noqa: F401 (pytest fixtures)
from store_contract import StoreContract
from verta_jupyter.tracking.stores.mlflow import MlflowStore

pytestmark = pytest.mark.mlflow


@pytest.fixture
def store(mlflow_server):
    # One server for the session; a fresh namespace per test makes a fresh, empty store.
    s = MlflowStore(mlflow_server.url, namespace=f"t{uuid.uuid4().hex[:12]}")
    yield s
    s.close()


class TestMlflowStoreContract(StoreContract):
    pass
