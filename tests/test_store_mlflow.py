"""MlflowStore against a real `mlflow server` on 127.0.0.1: the store contract unchanged, then
what only a network store has (faults: a server stopped mid-upload, a 5xx burst, wrong
credentials, a server that never answers; naming; secrets)."""
from __future__ import annotations

import os
import pickle
import time
import uuid

import pytest

from mlflow_server import (MlflowServer, fault_proxy, mlflow_server,  # noqa: F401 (fixtures)
                           require_mlflow, silent_server)
from store_contract import EchoModel, StoreContract
from verta_jupyter import Client
from verta_jupyter.tracking.stores.mlflow.store import MlflowStore
from verta_jupyter.errors import NotFoundError, VertaError
from verta_jupyter.tracking.stores.mlflow.rest import (AuthenticationError, RetryPolicy,
                                                       TransientError)

pytestmark = pytest.mark.mlflow


@pytest.fixture
def store(mlflow_server):
    # One server for the session; a fresh namespace per test makes a fresh, empty store.
    s = MlflowStore(mlflow_server.url, namespace=f"t{uuid.uuid4().hex[:12]}")
    yield s
    s.close()


class TestMlflowStoreContract(StoreContract):
    pass


# -- faults against real servers ---------------------------------------------------------------
FAST_RETRY = RetryPolicy(attempts=4, backoff=0.05, max_backoff=0.2)
ADMIN_PASSWORD = "verta-Jupyter-admin-pw-1"


@pytest.fixture
def auth_server(tmp_path_factory):
    """A basic-auth server (`mlflow[auth]`): it checks a password hash on every request, so
    only the credentials test uses it."""
    require_mlflow()
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-auth"), app_name="basic-auth",
                          admin=("admin", ADMIN_PASSWORD))
    try:
        server.start()
    except RuntimeError as exc:
        if "Flask-WTF" not in str(exc):
            raise
        message = "the basic-auth app needs `.venv-mlflow/bin/pip install 'mlflow[auth]'`"
        pytest.fail(message) if os.environ.get("CI", "").lower() in ("1", "true", "yes") \
            else pytest.skip(message)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def restartable_server(mlflow_server):
    """The shared server, left running after the test even if the test stopped it and failed."""
    yield mlflow_server
    if mlflow_server.proc is None:
        mlflow_server.start()


def test_server_stopped_mid_upload_leaves_nothing_half_visible(restartable_server, tmp_path):
    # Stops and restarts the shared server (same port, database and artifacts): cheaper than
    # starting a server of its own, and the tests after it find it running as before.
    mlflow_server = restartable_server
    store = MlflowStore(mlflow_server.url, retry_policy=FAST_RETRY,
                        namespace=f"k{uuid.uuid4().hex[:8]}")
    run = Client(store=store).set_experiment_run("interrupted")
    (tmp_path / "v.json").write_text('["a", "b"]')
    run.log_artifact("vocab", str(tmp_path / "v.json"))
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(12 * 1024 * 1024))

    moved = []

    def kill_at_a_third(n):  # the server dies while our bytes are on the wire
        moved.append(n)
        if sum(moved) > big.stat().st_size // 3 and mlflow_server.proc is not None:
            mlflow_server.kill()

    started = time.monotonic()
    with pytest.raises(TransientError) as failed:
        store.put_artifact("run", run.id, "weights", big, type="file", progress=kill_at_a_third)
    assert time.monotonic() - started < 30
    message = str(failed.value)
    assert mlflow_server.url in message and "running" in message and "upload" in message

    # The model upload is cut the same way: after its first file, before it is published.
    real_upload = store.http.upload

    def upload_then_die(local, remote, progress=None):
        real_upload(local, remote, progress=progress)
        mlflow_server.kill()

    store.http.upload = upload_then_die
    with pytest.raises(VertaError):
        run.log_model(EchoModel, artifacts=["vocab"], sample_input={"words": ["a"]})
    store.http.upload = real_upload

    mlflow_server.start()  # same database, same artifact folder, same port
    keys = [a.key for a in store.list_artifacts("run", run.id)]
    assert keys == ["vocab"]  # neither the weights nor the model is visible
    with pytest.raises(NotFoundError):
        store.artifact_info("run", run.id, "weights")
    with pytest.raises(VertaError):
        run.get_model()

    store.put_artifact("run", run.id, "weights", big, type="file")  # the retry succeeds
    assert store.fetch_artifact("run", run.id, "weights", tmp_path / "back.bin").read_bytes() \
        == big.read_bytes()
    run.log_model(EchoModel, artifacts=["vocab"], sample_input={"words": ["a"]})
    assert run.load_model().predict({"words": ["a", "z"]}) == {"known": ["a"], "size": 2}
    assert store.check().ok


def test_a_5xx_burst_is_retried(fault_proxy):
    store = MlflowStore(fault_proxy.url, retry_policy=FAST_RETRY, namespace=f"b{uuid.uuid4().hex[:8]}")
    project = store.get_or_create("project", "p")
    experiment = store.get_or_create("experiment", "e", project.id)
    run = store.get_or_create("run", "r", experiment.id)
    fault_proxy.fail_next(3, 503)
    store.put_fields("run", run.id, "metrics", {"acc": 0.9})
    fault_proxy.fail_next(2, 500)
    assert store.get_fields("run", run.id, "metrics") == {"acc": 0.9}
    assert fault_proxy.served == 5
    fault_proxy.fail_next(10, 503)  # longer than our patience: a clear error, not a hang
    with pytest.raises(TransientError, match="HTTP 503") as failed:
        store.get_fields("run", run.id, "metrics")
    assert "4 attempt" in str(failed.value) and fault_proxy.url in str(failed.value)


def test_a_lost_create_reply_never_duplicates_a_run(fault_proxy):
    store = MlflowStore(fault_proxy.url, retry_policy=FAST_RETRY, namespace=f"d{uuid.uuid4().hex[:8]}")
    project = store.get_or_create("project", "p")
    experiment = store.get_or_create("experiment", "e", project.id)
    fault_proxy.fail_after_forward("runs/create", 502)  # the server made it; the reply is lost
    run = store.get_or_create("run", None, experiment.id)
    fault_proxy.fail_after_forward("experiments/create", 502)
    again = store.get_or_create("experiment", "e2", project.id)
    fault_proxy.fail_after_forward("registered-models/create", 504)
    model = store.get_or_create("registered_model", "m")
    assert fault_proxy.served == 3
    assert [r.id for r in store.find("run", parent_id=experiment.id)] == [run.id]
    assert [e.name for e in store.find("experiment", parent_id=project.id)] == ["e", "e2"]
    assert store.get("experiment", again.id) == again
    assert [m.id for m in store.find("registered_model")] == [model.id]


def test_wrong_credentials_give_a_clear_401_without_the_secret(auth_server):
    auth_env = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD}
    wrong = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "s3cret-Wrong-pw"}
    store = MlflowStore(auth_server.url, env=wrong, retry_policy=FAST_RETRY)
    with pytest.raises(AuthenticationError) as failed:
        store.get_or_create("project", "p")
    message = str(failed.value)
    assert "401" in message and auth_server.url in message and "MLFLOW_TRACKING_PASSWORD" in message
    for text in (message, repr(store), repr(store.http), repr(failed.value.__cause__)):
        assert "s3cret-Wrong-pw" not in text
    with pytest.raises(TypeError):  # a model referencing the store cannot carry it off
        pickle.dumps(store)
    with pytest.raises(AuthenticationError):  # no credentials at all
        MlflowStore(auth_server.url, env={}).get_or_create("project", "p")
    good = MlflowStore(auth_server.url, env=auth_env, namespace=f"a{uuid.uuid4().hex[:8]}")
    assert good.get_or_create("project", "p").name == "p"
    # the URL may carry the credentials too; they never reach `location` or a repr
    inline = MlflowStore(auth_server.url.replace("//", f"//admin:{ADMIN_PASSWORD}@"), env={})
    assert ADMIN_PASSWORD not in inline.location + repr(inline)
    assert inline.find("project") is not None


def test_a_server_that_never_answers_times_out(silent_server):
    store = MlflowStore(silent_server.url, timeout=(1.0, 1.0),
                        retry_policy=RetryPolicy(attempts=2, backoff=0.05))
    started = time.monotonic()
    with pytest.raises(TransientError, match="timeout") as failed:
        store.get("run", "0123456789abcdef")
    assert time.monotonic() - started < 10
    assert silent_server.url in str(failed.value)


def test_naming_in_mlflow(mlflow_server):
    store = MlflowStore(mlflow_server.url, namespace=f"n{uuid.uuid4().hex[:8]}")
    project = store.get_or_create("project", "a/b")  # "/" is escaped in MLflow's name
    experiment = store.get_or_create("experiment", "c", project.id)
    raw = store.http.call("GET", "experiments/get", {"experiment_id": experiment.id})["experiment"]
    assert raw["name"] == f"{store.namespace}/a%2Fb/c"
    assert (project.name, experiment.name) == ("a/b", "c")
    run = store.get_or_create("run", "it's", experiment.id)
    store.put_fields("run", run.id, "hyperparameters", {"lr": 0.1, "opt": "adam", "s": "0.1"})
    data = store.http.call("GET", "runs/get", {"run_id": run.id})["run"]["data"]
    assert {p["key"]: p["value"] for p in data["params"]} == {"lr": "0.1", "opt": "adam", "s": '"0.1"'}
    assert store.get_fields("run", run.id, "hyperparameters") == {"lr": 0.1, "opt": "adam", "s": "0.1"}
    store.put_fields("run", run.id, "hyperparameters", {"lr": 0.2})  # MLflow params are immutable
    assert store.get_fields("run", run.id, "hyperparameters")["lr"] == 0.2
    assert Client(store=store.location).get_experiment_run(id=run.id).name == "it's"


def test_many_metrics_are_batched_within_mlflow_limits(mlflow_server):
    store = MlflowStore(mlflow_server.url, namespace=f"m{uuid.uuid4().hex[:8]}")
    project = store.get_or_create("project", "p")
    run = store.get_or_create("run", "r", store.get_or_create("experiment", "e", project.id).id)
    metrics = {f"m{i}": i / 7 for i in range(2500)}
    params = {f"p{i}": i for i in range(250)}
    store.put_fields("run", run.id, "metrics", metrics)
    store.put_fields("run", run.id, "hyperparameters", params)
    assert store.get_fields("run", run.id, "metrics") == metrics
    assert store.get_fields("run", run.id, "hyperparameters") == params


def test_a_model_that_uses_a_store_client_is_refused_at_capture(shell, mlflow_server):
    """A Client in a notebook global is not captured unless the model uses it; if it does, the
    capture refuses it (VJ202) rather than carrying a session or a password into the package."""
    from verta_jupyter import capture_model
    from verta_jupyter.errors import CaptureError

    shell.ns["URL"] = mlflow_server.url.replace("//", "//admin:pw-Not-in-package@")
    shell.run("from verta_jupyter import Client\nclient = Client(store=URL)\n"
              "class Uses:\n    def __init__(self, artifacts): pass\n"
              "    def predict(self, data): return client.find_runs()\n"
              "class Ignores:\n    def __init__(self, artifacts): pass\n"
              "    def predict(self, data): return data\n")
    captured = capture_model(shell.ns["Ignores"], shell.ns)
    assert "pw-Not-in-package" not in captured.source
    with pytest.raises(CaptureError) as refused:
        capture_model(shell.ns["Uses"], shell.ns)
    assert "VJ202" in refused.value.codes and "client" in str(refused.value)
    assert "pw-Not-in-package" not in str(refused.value)


def test_notebook_flow_against_mlflow(shell, mlflow_server, tmp_path):
    """%%verta_model -> predict panel -> rebuild in a fresh process, with the run on MLflow."""
    import json
    import subprocess
    import sys

    from IPython.utils.capture import capture_output

    location = f"{mlflow_server.url}?namespace=nb{uuid.uuid4().hex[:8]}"
    shell.run("%load_ext verta_jupyter")
    shell.run(f"from verta_jupyter import Client, PredictPanel\nclient = Client(store={location!r})\n"
              "run = client.set_experiment_run('notebook')\n")
    with capture_output():
        shell.run("%%verta_model --sample '{\"text\": \"hi\"}'\n"
                  "GREETING = 'hello'\n"
                  "class Greeter:\n"
                  "    def __init__(self, artifacts):\n        pass\n"
                  "    def predict(self, data):\n"
                  "        return {'reply': f\"{GREETING}, {data['text']}\"}\n")
    shell.run("panel = PredictPanel(run)\nanswer = panel.predict_json('{\"text\": \"yo\"}')")
    assert json.loads(shell.ns["answer"]) == {"reply": "hello, yo"}
    script = ("import json, sys\nfrom verta_jupyter import Client\n"
              "run = Client(store=sys.argv[1]).get_experiment_run(id=sys.argv[2])\n"
              "print(json.dumps(run.load_model().predict({'text': 'fresh'})))\n")
    proc = subprocess.run([sys.executable, "-I", "-c", script, location, shell.ns["run"].id],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ["PATH"], "VERTA_JUPYTER_CACHE": str(tmp_path / "c")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"reply": "hello, fresh"}


# -- overwrite=False: as atomic as MLflow allows (docs/mlflow.md) --------------------------------
RACER = """
import sys
from verta_jupyter.errors import AlreadyExistsError
from verta_jupyter.tracking.stores.mlflow.store import MlflowStore

url, namespace, run_id, key, path = sys.argv[1:]
store = MlflowStore(url, namespace=namespace)
store.get("run", run_id)  # connection and imports warm before the start line
print("ready", flush=True)
sys.stdin.readline()
try:
    store.put_artifact("run", run_id, key, path, type="file", overwrite=False)
    print("won", flush=True)
except AlreadyExistsError as exc:
    print("lost", exc, flush=True)
"""


def _generations(store: MlflowStore, run_id: str, key: str) -> list[str]:
    root = store.server.artifact_root(run_id)
    return sorted(e["path"].rsplit("/", 1)[-1] for e in store.http.list_artifacts(f"{root}/vj/{key}"))


def _race(store: MlflowStore, run_id: str, key: str, paths) -> list[str]:
    """Two processes at a barrier (each says "ready", both get "go" at once) log `key`."""
    import subprocess
    import sys

    racers = [subprocess.Popen([sys.executable, "-c", RACER, store.http.url, store.namespace, run_id,
                                key, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for path in paths]
    try:
        for racer in racers:
            assert racer.stdout.readline().strip() == "ready", racer.stderr.read()
        for racer in racers:
            racer.stdin.write("go\n")
            racer.stdin.flush()
        return [racer.communicate(timeout=120)[0].strip() for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()


def test_racing_writers_with_overwrite_false_exactly_one_wins(store, tmp_path):
    run = store.get_or_create("run", "race", store.get_or_create(
        "experiment", "e", store.get_or_create("project", "p").id).id)
    paths = []
    for name in ("a", "b"):
        paths.append(tmp_path / f"{name}.bin")
        paths[-1].write_bytes(name.encode() * 200_000)
    for round_ in range(3):
        key = f"weights{round_}"
        outcomes = _race(store, run.id, key, paths)
        assert sorted(o.split()[0] for o in outcomes) == ["lost", "won"], outcomes
        winner = paths[[o.split()[0] for o in outcomes].index("won")]
        loser_message = next(o for o in outcomes if o.startswith("lost"))
        assert repr(key) in loser_message and "overwrite=True" in loser_message
        fetched = store.fetch_artifact("run", run.id, key, tmp_path / f"back{round_}")
        assert fetched.read_bytes() == winner.read_bytes()  # the loser replaced nothing
        assert len(_generations(store, run.id, key)) == 1  # and left no staging folder
    assert store.get_fields("run", run.id, "hyperparameters") == {}  # claims are not user params


def test_a_claim_made_between_check_and_publish_wins(store, tmp_path):
    """The window a racing writer can hit: it claimed the key after our first look."""
    from verta_jupyter.errors import AlreadyExistsError
    from verta_jupyter.tracking.stores.mlflow.store import CLAIM_PARAM

    run = store.get_or_create("run", "window", store.get_or_create(
        "experiment", "e", store.get_or_create("project", "p").id).id)
    (tmp_path / "f.txt").write_text("mine")
    store.http.call("POST", "runs/log-parameter",
                    {"run_id": run.id, "key": CLAIM_PARAM + "k", "value": "0badc0ffee00"})
    with pytest.raises(AlreadyExistsError, match="being logged by another process"):
        store.put_artifact("run", run.id, "k", tmp_path / "f.txt", type="file", overwrite=False)
    with pytest.raises(NotFoundError):
        store.artifact_info("run", run.id, "k")
    assert _generations(store, run.id, "k") == []  # our staging upload is gone
    # overwrite=True is the documented way past a claim whose upload never finished
    store.put_artifact("run", run.id, "k", tmp_path / "f.txt", type="file", overwrite=True)
    assert store.fetch_artifact("run", run.id, "k", tmp_path / "back").read_text() == "mine"


def test_a_lost_claim_reply_is_still_ours(fault_proxy, tmp_path):
    store = MlflowStore(fault_proxy.url, retry_policy=FAST_RETRY, namespace=f"c{uuid.uuid4().hex[:8]}")
    run = store.get_or_create("run", "r", store.get_or_create(
        "experiment", "e", store.get_or_create("project", "p").id).id)
    (tmp_path / "f.txt").write_text("once")
    fault_proxy.fail_after_forward("runs/log-parameter", 502)  # accepted; the reply is lost
    store.put_artifact("run", run.id, "k", tmp_path / "f.txt", type="file", overwrite=False)
    assert fault_proxy.served == 1
    assert store.fetch_artifact("run", run.id, "k", tmp_path / "back").read_text() == "once"
    from verta_jupyter.errors import AlreadyExistsError

    with pytest.raises(AlreadyExistsError, match="is already logged"):
        store.put_artifact("run", run.id, "k", tmp_path / "f.txt", type="file", overwrite=False)


def test_garbage_collection_is_refused_with_what_to_use_instead(store):
    """The protocol's collect_garbage: the server manages its own storage, and says so."""
    from verta_jupyter.errors import StoreError

    with pytest.raises(StoreError, match="manages its own storage.*mlflow gc"):
        store.collect_garbage(min_age=0)
    assert store.check(verify_blobs=False).ok
