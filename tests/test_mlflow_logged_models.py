"""MLflow 3 logged models on a real `mlflow server` (and a proxy in front of it): a model logged
to a run is listed by `mlflow.search_logged_models`, linked to its run, and loads and serves
through `models:/<model_id>` answering what run.load_model() answers; an MLflow 2 server gets
none and one note; hostile create answers are refused before any byte is written; the magic's
summary names the store, why it was chosen, and the logged model."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from mlflow_server import FaultProxy, _reply, mlflow_bin, mlflow_server  # noqa: F401
from test_mlflow_signature import ECHO, MLFLOW_ENV, in_mlflow

pytestmark = pytest.mark.mlflow


# -- MLflow 3 logged models, on a real server --------------------------------------------------
VOCAB_MODEL = '''
import json
import pathlib

class Vocab:
    def __init__(self, artifacts):
        with open(artifacts["vocab"]) as f:
            self.vocab = json.load(f)
        self.extra = sorted(p.name for p in pathlib.Path(artifacts["tree"]).iterdir())

    def predict(self, data):
        items = data if isinstance(data, list) else [data]
        out = [{"known": [w for w in item["words"] if w in self.vocab], "extra": self.extra}
               for item in items]
        return out if isinstance(data, list) else out[0]
'''

SEARCH_AND_LOAD = """
import json, sys, warnings
payload = json.load(sys.stdin)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import mlflow
    found = mlflow.search_logged_models(experiment_ids=[payload["experiment_id"]],
                                        output_format="list")
    logged = mlflow.get_logged_model(payload["model_id"])
    model = mlflow.pyfunc.load_model("models:/" + payload["model_id"])
    answers = [model.predict(x) for x in payload["inputs"]]
    run = mlflow.get_run(payload["run_id"])
meta = model.metadata
print(json.dumps({
    "found": [m.model_id for m in found], "status": str(logged.status),
    "source_run_id": logged.source_run_id, "name": logged.name,
    "run_outputs": [o.model_id for o in (run.outputs.model_outputs if run.outputs else [])],
    "answers": answers, "warnings": [str(w.message)[:300] for w in caught],
    "signature": meta.signature.to_dict() if meta.signature else None,
    "model_id": meta.model_id, "run_id": meta.run_id, "mlflow_version": meta.mlflow_version,
    "model_uuid": meta.model_uuid,
}))
"""


@pytest.fixture
def logged_run(shell, mlflow_server, tmp_path):
    """A model with a file and a directory artifact, logged to a fresh namespace on a real
    server; returns (run, the LoggedModel log_model returned, the store)."""
    import uuid

    from verta_jupyter import Client
    from verta_jupyter.tracking.stores.mlflow.store import MlflowStore

    store = MlflowStore(mlflow_server.url, namespace=f"n{uuid.uuid4().hex[:8]}")
    run = Client(store=store).set_experiment_run("native")
    (tmp_path / "v.json").write_text('["a", "b", "c"]')
    (tmp_path / "tree").mkdir()
    for name in ("x.txt", "y.txt"):
        (tmp_path / "tree" / name).write_text(name)
    run.log_artifact("vocab", str(tmp_path / "v.json"))
    run.log_artifact("tree", str(tmp_path / "tree"))
    shell.run(VOCAB_MODEL)
    logged = run.log_model(shell.ns["Vocab"], artifacts=["vocab", "tree"],
                           sample_input={"words": ["a", "q"]}, namespace=shell.ns)
    return run, logged, store


def test_a_logged_model_is_an_mlflow_3_logged_model(logged_run, tmp_path):
    """Listed by search_logged_models, linked to its run (source and outputs), READY, and
    `models:/<model_id>` predicts what run.load_model() predicts, with the signature."""
    run, logged, store = logged_run
    model_id = logged.mlflow_model_id
    assert model_id.startswith("m-") and f"models:/{model_id}" in repr(logged)
    assert run.model_info().meta["mlflow_model_id"] == model_id  # read back from the store
    inputs = [{"words": ["a", "q", "c"]}, [{"words": ["b"]}], [{"words": []}, {"words": ["c"]}]]
    ours = run.load_model()
    env = {**MLFLOW_ENV, "MLFLOW_TRACKING_URI": store.http.url}
    got = in_mlflow(SEARCH_AND_LOAD, {"experiment_id": store.get("run", run.id).parent_id,
                                      "model_id": model_id, "run_id": run.id, "inputs": inputs},
                    cwd=tmp_path, env=env)
    assert model_id in got["found"]
    assert got["status"] == "READY" and got["source_run_id"] == run.id and got["name"] == "Vocab"
    assert model_id in got["run_outputs"]
    assert got["answers"] == [ours.predict(x) for x in inputs]
    assert got["model_id"] == got["model_uuid"] == model_id and got["run_id"] == run.id
    assert got["mlflow_version"] and got["mlflow_version"][0].isdigit()
    assert json.loads(got["signature"]["inputs"]) == [
        {"type": "array", "items": {"type": "string"}, "name": "words", "required": True}]
    assert [c["name"] for c in json.loads(got["signature"]["outputs"])] == ["known", "extra"]
    assert not [w for w in got["warnings"] if "type hint" in w.lower()], got["warnings"]


# -- an MLflow 2 server, and hostile answers, in front of the real server ------------------------
class ScriptedProxy(FaultProxy):
    """Forwards to the real server, except requests whose path contains a scripted part: those
    get the scripted (status, content type, body). `seen` lists (method, path) of every request."""

    def __init__(self, upstream_port: int, script: dict[str, tuple[int, str, bytes]]):
        super().__init__(upstream_port)
        self.script = script
        self.seen: list[tuple[str, str]] = []

    def _handle(self, handler) -> None:
        self.seen.append((handler.command, handler.path))
        rule = next((v for k, v in self.script.items() if k in handler.path), None)
        if rule is None:
            return super()._handle(handler)
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)
        status, content_type, body = rule
        _reply(handler, status, body, content_type)


FLASK_404 = (404, "text/html", b"<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n"
                               b"<h1>Not Found</h1>\n<p>The requested URL was not found.</p>\n")


@pytest.fixture
def proxied(mlflow_server, shell, tmp_path):
    """make(script) -> (run, store, proxy): a fresh namespace reached through a ScriptedProxy."""
    import uuid

    from verta_jupyter import Client
    from verta_jupyter.tracking.stores.mlflow.rest import RetryPolicy
    from verta_jupyter.tracking.stores.mlflow.store import MlflowStore

    proxies = []
    shell.run(ECHO)

    def make(script):
        proxy = ScriptedProxy(mlflow_server.port, script)
        proxies.append(proxy)
        store = MlflowStore(proxy.url, namespace=f"p{uuid.uuid4().hex[:8]}",
                            retry_policy=RetryPolicy(attempts=1))
        return Client(store=store).set_experiment_run("r"), store, proxy

    yield make
    for proxy in proxies:
        proxy.close()


UNSUPPORTED = {"flask 404": FLASK_404,
               "501": (501, "application/json",
                       b'{"error_code": "NOT_IMPLEMENTED", "message": "not here"}'),
               "405": (405, "text/html", b"<h1>Method Not Allowed</h1>")}


@pytest.mark.parametrize("answer", list(UNSUPPORTED))
def test_an_mlflow_2_server_gets_no_logged_model_and_one_note(proxied, shell, caplog, tmp_path,
                                                              answer):
    run, store, proxy = proxied({"/api/2.0/mlflow/logged-models": UNSUPPORTED[answer],
                                 "/api/2.0/mlflow/runs/outputs": FLASK_404})
    with caplog.at_level("WARNING", logger="verta_jupyter.tracking.stores.mlflow"):
        first = run.log_model(shell.ns["Echo"], sample_input={"q": 1}, namespace=shell.ns)
        second = run.log_model(shell.ns["Echo"], sample_input={"q": 2}, namespace=shell.ns,
                               overwrite=True)
    assert "mlflow_model_id" not in first.info.meta and "mlflow_model_id" not in second.info.meta
    notes = [r.getMessage() for r in caplog.records if "logged-model" in r.getMessage()]
    assert len(notes) == 1 and proxy.url in notes[0] and "runs:/" in notes[0]
    assert len([p for _, p in proxy.seen if "logged-models" in p]) == 1  # not asked again
    assert first.mlflow_model_id is None and "mlflow model" not in repr(first)
    if answer != "flask 404":
        return
    # ...and the model still loads with MLflow's tools from the run
    got = in_mlflow("import json, sys, mlflow\np = json.load(sys.stdin)\n"
                    "print(json.dumps(mlflow.pyfunc.load_model(p['uri']).predict(p['x'])))",
                    {"uri": f"runs:/{run.id}/", "x": {"q": 3}}, cwd=tmp_path,
                    env={**MLFLOW_ENV, "MLFLOW_TRACKING_URI": proxy.url})
    assert got == run.load_model().predict({"q": 3})


def _created(info: dict) -> tuple[int, str, bytes]:
    return 200, "application/json", json.dumps({"model": {"info": info}}).encode()


HOSTILE_CREATES = {
    "html": (200, "text/html", b"<html><body>Please log in</body></html>"),
    "no model": (200, "application/json", b'{"logged_model": 1}'),
    "id with a path": _created({"model_id": "../../0/x", "artifact_uri":
                                "mlflow-artifacts:/0/models/../../0/x/artifacts"}),
    "id not text": _created({"model_id": ["m-1"], "artifact_uri": "mlflow-artifacts:/0/models/m/a"}),
    "folder escapes": _created({"model_id": "m-1", "artifact_uri": "mlflow-artifacts:/../../etc"}),
    "folder is another": _created({"model_id": "m-1", "artifact_uri":
                                   "mlflow-artifacts:/0/other/models/m-2/artifacts"}),
    "folder is the run's": None,  # filled in with the run's own artifact root
    "folder unreachable": _created({"model_id": "m-1", "artifact_uri":
                                    "s3://bucket/models/m-1/artifacts"}),
}


@pytest.mark.parametrize("case", list(HOSTILE_CREATES))
def test_a_hostile_logged_model_answer_is_refused_before_anything_is_written(proxied, shell, case):
    """The create answer decides where files go: a bad one is a StoreError naming the server,
    the run's model is not published, and no file was sent anywhere but the run's own folder."""
    from verta_jupyter.errors import NotFoundError, StoreError

    run, store, proxy = proxied({})
    root = store.server.artifact_root(run.id)
    answer = HOSTILE_CREATES[case] or _created(
        {"model_id": "m-1", "artifact_uri": f"mlflow-artifacts:/{root}"})
    proxy.script["/api/2.0/mlflow/logged-models"] = answer
    with pytest.raises(StoreError) as refused:
        run.log_model(shell.ns["Echo"], sample_input={"q": 1}, namespace=shell.ns)
    assert proxy.url in str(refused.value) and "Traceback" not in str(refused.value)
    with pytest.raises(NotFoundError):
        run.model_info()
    puts = [p for method, p in proxy.seen if method == "PUT"]
    assert puts and all(f"/mlflow-artifacts/artifacts/{root}/" in p for p in puts), puts


def test_an_answer_cut_off_mid_body_is_a_store_error(tmp_path):
    """A server (or proxy) that promises more bytes than it sends and hangs up: a StoreError
    naming the server and the call, not requests' ChunkedEncodingError."""
    import socket
    import threading

    from verta_jupyter.errors import StoreError
    from verta_jupyter.tracking.stores.mlflow.rest import MlflowHttp, RetryPolicy

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100\r\n\r\n{\"model\": {")

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with pytest.raises(StoreError, match="POST logged-models") as cut:
            MlflowHttp(url, retry_policy=RetryPolicy(attempts=1), timeout=(2, 5)).call(
                "POST", "logged-models", {}, retry=False)
        assert url in str(cut.value)
    finally:
        listener.close()


# -- the magic's summary: which store and why, and the logged model ------------------------------
def _magic_summary(shell, setup: str) -> str:
    from IPython.utils.capture import capture_output

    shell.run("%load_ext verta_jupyter")
    shell.run(setup)
    with capture_output() as captured:
        shell.run("%%verta_model --no-panel --sample '{\"q\": 1}'\n" + ECHO)
    (summary,) = captured.outputs
    assert "vj-store" in summary.data["text/html"]
    return summary.data["text/plain"]


def test_the_summary_names_the_store_chosen_by_mlflow_tracking_uri_and_the_logged_model(
        shell, mlflow_server, monkeypatch):
    import uuid

    monkeypatch.delenv("VERTA_JUPYTER_STORE", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("VERTA_JUPYTER_MLFLOW_NAMESPACE", f"s{uuid.uuid4().hex[:8]}")
    text = _magic_summary(shell, "from verta_jupyter import Client\n"
                                 "run = Client().set_experiment_run('summary')")
    model_id = shell.run("run.model_info().meta['mlflow_model_id']")
    headline, rest = text.split("\n", 1)
    assert f" in {mlflow_server.url}?namespace=s" in headline, headline
    assert "store chosen by: $MLFLOW_TRACKING_URI (an MLflow tracking server)" in rest, rest
    assert f"mlflow: logged model {model_id}: mlflow.pyfunc.load_model('models:/{model_id}')" in text


def test_the_summary_names_a_folder_store_and_why(shell, tmp_path, monkeypatch):
    monkeypatch.delenv("VERTA_JUPYTER_STORE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    text = _magic_summary(shell, f"from verta_jupyter import Client\n"
                                 f"run = Client(store=r'{tmp_path / 'st'}').set_experiment_run('x')")
    assert f" in {tmp_path / 'st'}" in text.split("\n", 1)[0]
    assert "store chosen by: the store= argument" in text
    assert "mlflow:" not in text  # no MLflow logged model for a folder store


def test_mlflow_models_serve_of_the_logged_model_answers_what_run_load_model_answers(
        logged_run, tmp_path):
    """The scoring server path: `mlflow models serve -m models:/<id>` on 127.0.0.1 gets
    `{"inputs": x}` and answers exactly run.load_model().predict(x), a one-record list included."""
    import signal

    import requests

    from mlflow_server import MLFLOW_BIN, free_port
    from test_mlflow_export import _wait_for_ping

    run, logged, store = logged_run
    port = free_port()
    env = {**MLFLOW_ENV, "MLFLOW_TRACKING_URI": store.http.url,
           "PATH": f"{MLFLOW_BIN.parent}{os.pathsep}{os.environ['PATH']}"}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([str(MLFLOW_BIN), "models", "serve", "-m",
                             f"models:/{logged.mlflow_model_id}", "--env-manager", "local",
                             "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_ping(proc, url, tmp_path / "serve.log")
        ours = run.load_model()
        for x in [{"words": ["a", "z"]}, [{"words": ["b"]}], [{"words": []}, {"words": ["c"]}]]:
            answer = requests.post(f"{url}/invocations", json={"inputs": x}, timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"predictions": ours.predict(x)}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()
