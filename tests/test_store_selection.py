"""Which store `Client()` opens and why: store=, $VERTA_JUPYTER_STORE, $MLFLOW_TRACKING_URI
(http/https), the local default; and MLflow's own auth/TLS variables, honoured as MLflow's
client honours them (against a real `mlflow server` and loopback servers, one of them https)."""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid

import pytest

from hostile_server import RUN_ID, HostileServer, json_answer  # noqa: F401
from mlflow_server import mlflow_server  # noqa: F401 (fixture)
from verta_jupyter import Client
from verta_jupyter.errors import StoreError
from verta_jupyter.tracking.client import choose_store
from verta_jupyter.tracking.stores.local.store import LocalStore
from verta_jupyter.tracking.stores.mlflow.rest import RetryPolicy, TransientError
from verta_jupyter.tracking.stores.mlflow.store import MlflowStore

MLFLOW_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
               "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_INSECURE_TLS",
               "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_CLIENT_CERT_PATH",
               "VERTA_JUPYTER_STORE", "VERTA_JUPYTER_MLFLOW_NAMESPACE")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No store variables from the developer's shell; the working directory is a temp folder."""
    for name in MLFLOW_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.mark.parametrize("store, env, spec, origin", [
    ("/x", {"VERTA_JUPYTER_STORE": "/y", "MLFLOW_TRACKING_URI": "http://m:5000"}, "/x", "store="),
    (None, {"VERTA_JUPYTER_STORE": "/y", "MLFLOW_TRACKING_URI": "http://m:5000"}, "/y",
     "$VERTA_JUPYTER_STORE"),
    (None, {"MLFLOW_TRACKING_URI": "https://m:5000"}, "https://m:5000", "$MLFLOW_TRACKING_URI"),
    (None, {"MLFLOW_TRACKING_URI": "file:///tmp/mlruns"}, "verta_store", "is not an http(s)"),
    (None, {"MLFLOW_TRACKING_URI": "databricks"}, "verta_store", "is not an http(s)"),
    (None, {}, "verta_store", "the default folder"),
])
def test_the_order_of_choice(store, env, spec, origin):
    choice = choose_store(store, env)
    assert (choice.spec, origin in choice.origin) == (spec, True)


def test_a_non_http_tracking_uri_is_shown_without_its_password():
    choice = choose_store(None, {"MLFLOW_TRACKING_URI": "postgresql://u:pg-Secret@db/mlflow"})
    assert "pg-Secret" not in choice.origin and "u:***@db" in choice.origin


def test_mlflow_tracking_uri_routes_client_to_the_server(clean_env, mlflow_server, tmp_path):
    namespace = f"uri{uuid.uuid4().hex[:8]}"
    clean_env.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    clean_env.setenv("VERTA_JUPYTER_MLFLOW_NAMESPACE", namespace)
    client = Client()
    assert isinstance(client.store, MlflowStore)
    assert client.store_origin == "$MLFLOW_TRACKING_URI (an MLflow tracking server)"
    run = client.set_experiment_run("routed")
    run.log_metric("acc", 0.5)
    # the server itself has the run (read with a plain request, not through our store)
    import requests

    answer = requests.get(f"{mlflow_server.url}/api/2.0/mlflow/runs/get",
                          params={"run_id": run.id}, timeout=10).json()
    assert answer["run"]["info"]["run_name"] == "routed"
    assert list(tmp_path.iterdir()) == []  # no local store was made
    # VERTA_JUPYTER_STORE still wins over it
    clean_env.setenv("VERTA_JUPYTER_STORE", str(tmp_path / "mine"))
    local = Client()
    assert isinstance(local.store, LocalStore) and local.store_origin == "$VERTA_JUPYTER_STORE"


def test_a_bad_tracking_uri_says_where_it_came_from(clean_env):
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://ann:uri-Secret@:5000")
    with pytest.raises(StoreError) as refused:
        Client()
    message = str(refused.value)
    assert "has no host name" in message and "$MLFLOW_TRACKING_URI" in message
    assert "uri-Secret" not in message and "ann:***@" in message


def test_a_file_tracking_uri_leaves_the_local_default(clean_env, tmp_path):
    clean_env.setenv("MLFLOW_TRACKING_URI", "file:///nowhere/mlruns")
    client = Client()
    assert isinstance(client.store, LocalStore)
    assert "is not an http(s) tracking server" in client.store_origin
    assert client.store.location.endswith("verta_store")


# -- MLflow's auth variables --------------------------------------------------------------------
FAST = RetryPolicy(attempts=1)


def _authorization(env: dict) -> str | None:
    server = HostileServer()
    try:
        server.api("GET", "runs/get", json_answer({}, 404))
        with pytest.raises(StoreError):
            MlflowStore(server.url, env=env, retry_policy=FAST).get("run", RUN_ID)
        return server.asked("runs/get")[0].headers.get("Authorization")
    finally:
        server.close()


def test_auth_variables_as_mlflow_reads_them():
    basic = base64.b64encode(b"ann:pw-1").decode()
    assert _authorization({"MLFLOW_TRACKING_USERNAME": "ann", "MLFLOW_TRACKING_PASSWORD": "pw-1",
                           "MLFLOW_TRACKING_TOKEN": "tok"}) == f"Basic {basic}"  # basic first
    assert _authorization({"MLFLOW_TRACKING_TOKEN": "tok"}) == "Bearer tok"
    # MLflow sends basic auth only with both halves; a lone username falls through to the token
    assert _authorization({"MLFLOW_TRACKING_USERNAME": "ann", "MLFLOW_TRACKING_TOKEN": "tok"}) \
        == "Bearer tok"
    assert _authorization({}) is None


# -- MLflow's TLS variables, against a real https server ------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    if shutil.which("openssl") is None:
        message = "the openssl command is needed to make a test certificate"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    return str(cert), str(key)


@pytest.fixture
def https_server(certificate):
    server = HostileServer(tls=certificate)
    server.api("GET", "experiments/get", json_answer({"experiment": {
        "experiment_id": "7", "name": "p", "lifecycle_stage": "active",
        "tags": [{"key": "verta_jupyter.kind", "value": "project"}]}}))
    yield server
    server.close()


def test_tls_variables_as_mlflow_reads_them(https_server, certificate, tmp_path):
    def project(env):
        return MlflowStore(https_server.url, env=env, retry_policy=FAST,
                           timeout=(3.0, 5.0)).get("project", "7").name

    with pytest.raises(TransientError, match="certificate verify failed"):
        project({})  # a self-signed certificate is refused by default
    assert project({"MLFLOW_TRACKING_SERVER_CERT_PATH": certificate[0]}) == "p"
    from urllib3.exceptions import InsecureRequestWarning

    with pytest.warns(InsecureRequestWarning):  # what MLflow's client shows too: no silence
        assert project({"MLFLOW_TRACKING_INSECURE_TLS": "true"}) == "p"
    with pytest.raises(StoreError, match="both set"):
        project({"MLFLOW_TRACKING_INSECURE_TLS": "true",
                 "MLFLOW_TRACKING_SERVER_CERT_PATH": certificate[0]})
    with pytest.raises(StoreError, match="is not a boolean"):
        project({"MLFLOW_TRACKING_INSECURE_TLS": "yes please"})
    with pytest.raises(StoreError, match="no such file"):
        project({"MLFLOW_TRACKING_CLIENT_CERT_PATH": str(tmp_path / "missing.pem")})
    # a client certificate is presented (the server does not ask for one; it must still load)
    both = tmp_path / "client.pem"
    both.write_text(open(certificate[0]).read() + open(certificate[1]).read())
    assert project({"MLFLOW_TRACKING_SERVER_CERT_PATH": certificate[0],
                    "MLFLOW_TRACKING_CLIENT_CERT_PATH": str(both)}) == "p"
