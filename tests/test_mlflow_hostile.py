"""MlflowStore against broken and hostile servers (a scripted loopback server, `hostile_server`):
listings that try to write outside the destination, answers that are not MLflow's, paging that
never ends, URLs that cannot work, secrets in messages. Each test asserts a clear StoreError that
names the server, that nothing was written outside its place, and that the client stopped."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from hostile_server import (ARTIFACTS, ROOT, RUN_ID, HostileServer, hostile,  # noqa: F401
                            json_answer, raw_answer, script_file, script_listing, script_run)
from verta_jupyter import Client
from verta_jupyter.errors import StoreError
from verta_jupyter.tracking.stores.base import tree_digest
from verta_jupyter.tracking.stores.mlflow.rest import RetryPolicy
from verta_jupyter.tracking.stores.mlflow.server import MAX_PAGES
from verta_jupyter.tracking.stores.mlflow.store import MlflowStore

ONE_TRY = RetryPolicy(attempts=1)
GEN = "a1b2c3d4e5f6"
BASE = f"{ROOT}/vj/data/{GEN}"


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with its bytes (None for a folder): "byte-identical" made testable."""
    return {p.relative_to(folder).as_posix(): (None if p.is_dir() else p.read_bytes())
            for p in sorted(folder.rglob("*"))}


def publish_directory(server: HostileServer, files: dict[str, bytes], listing: list[dict]) -> None:
    """A run whose directory artifact "data" records `files`, listed on the server as `listing`."""
    entries = [(rel, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))
               for rel, data in files.items()]
    record = {"gen": GEN, "type": "directory", "filename": "data", "meta": {},
              "size": sum(e[2] for e in entries), "digest": tree_digest(entries)}
    script_run(server, {"verta_jupyter.artifact.data": json.dumps(record)})
    script_listing(server, BASE, listing)
    for rel, data in files.items():
        script_file(server, f"{BASE}/{rel}", data)


def store_of(server: HostileServer, **kwargs) -> MlflowStore:
    return MlflowStore(server.url, retry_policy=ONE_TRY, timeout=(2.0, 5.0), **kwargs)


# -- 1. paths from a listing ---------------------------------------------------------------------
BAD_ENTRIES = ["..", "../escaped.txt", "a/../../escaped.txt", "/tmp/escaped.txt", "..\\escaped.txt",
               "C:\\escaped.txt", "C:escaped.txt", "sub\\..\\..\\x", "", "./x", "a//b", "x\x00y"]


@pytest.mark.parametrize("bad", BAD_ENTRIES)
@pytest.mark.parametrize("is_dir", [False, True])
def test_a_listing_entry_cannot_steer_a_write_outside(hostile, tmp_path, bad, is_dir):
    good = b"fine"
    # The hostile entry's bytes match the recorded digest if written where the server wants
    # them: a digest check after the write would come too late.
    publish_directory(hostile, {"ok.txt": good},
                      [{"path": "ok.txt", "is_dir": False, "file_size": 4},
                       {"path": bad, "is_dir": is_dir, "file_size": 4}])
    script_file(hostile, f"{BASE}/{bad}", b"pwned")
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path)

    with pytest.raises(StoreError) as refused:
        store_of(hostile).fetch_artifact("run", RUN_ID, "data", out / "data")

    message = str(refused.value)
    assert hostile.url in message and repr(bad) in message and "nothing was written" in message
    assert "unsafe path" in message
    assert snapshot(tmp_path) == before  # not even a temp folder left
    assert not hostile.asked(f"{ARTIFACTS}/{BASE}/")  # refused before the first download


def test_a_listing_that_nests_for_ever_is_stopped(hostile, tmp_path):
    publish_directory(hostile, {}, [])

    def deeper(request):  # every folder holds another folder: the walk must stop on its own
        return 200, "application/json", json.dumps({"files": [{"path": "a", "is_dir": True}]}).encode()

    hostile.route("GET", ARTIFACTS, deeper)
    started = time.monotonic()
    with pytest.raises(StoreError, match="levels deep") as refused:
        store_of(hostile).fetch_artifact("run", RUN_ID, "data", tmp_path / "data")
    assert time.monotonic() - started < 20 and hostile.url in str(refused.value)
    assert len(hostile.asked(ARTIFACTS)) <= 70
    assert list(tmp_path.iterdir()) == []


def test_a_tampered_file_is_refused_and_nothing_lands(hostile, tmp_path):
    publish_directory(hostile, {"ok.txt": b"original"},
                      [{"path": "ok.txt", "is_dir": False, "file_size": 8}])
    script_file(hostile, f"{BASE}/ok.txt", b"tampered")
    with pytest.raises(StoreError, match="does not match its digest"):
        store_of(hostile).fetch_artifact("run", RUN_ID, "data", tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("record", [
    {"gen": "../../x", "type": "file", "filename": "f", "size": 1, "digest": "sha256:" + "0" * 64},
    {"gen": GEN, "type": "file", "filename": "../f", "size": 1, "digest": "sha256:" + "0" * 64},
    {"gen": GEN, "type": "file", "filename": "f", "size": "1", "digest": "sha256:" + "0" * 64},
    {"gen": GEN, "type": "exe", "filename": "f", "size": 1, "digest": "sha256:" + "0" * 64},
    {"gen": GEN, "type": "file", "filename": "f", "size": 1},
    "not a record", [1, 2]])
def test_a_damaged_artifact_record_is_named(hostile, tmp_path, record):
    text = record if isinstance(record, str) else json.dumps(record)
    script_run(hostile, {"verta_jupyter.artifact.data": text})
    store = store_of(hostile)
    for attempt in (lambda: store.artifact_info("run", RUN_ID, "data"),
                    lambda: store.list_artifacts("run", RUN_ID),
                    lambda: store.fetch_artifact("run", RUN_ID, "data", tmp_path / "x")):
        with pytest.raises(StoreError, match="artifact 'data' is damaged") as refused:
            attempt()
        assert hostile.url in str(refused.value) and "overwrite=True" in str(refused.value)
    assert list(tmp_path.iterdir()) == []


def test_the_whole_path_through_the_client_is_guarded(hostile, tmp_path, monkeypatch):
    """run.fetch_artifacts (cache and all) on a hostile listing: refused, nothing outside."""
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    publish_directory(hostile, {"ok.txt": b"fine"},
                      [{"path": "ok.txt", "is_dir": False}, {"path": "../../../evil", "is_dir": False}])
    script_file(hostile, f"{BASE}/../../../evil", b"pwned")
    before = snapshot(tmp_path)
    run = Client(store=hostile.url).get_experiment_run(id=RUN_ID)
    with pytest.raises(StoreError, match="'../../../evil'"):
        run.fetch_artifacts(["data"])
    after = {k: v for k, v in snapshot(tmp_path).items() if v is not None}  # cache folders only
    assert after == {k: v for k, v in before.items() if v is not None}


# -- 2. answers that are not MLflow's -------------------------------------------------------------
GOOD_RUN = {"info": {"run_id": RUN_ID, "experiment_id": "1", "start_time": 1,
                     "artifact_uri": f"mlflow-artifacts:/{ROOT}"}, "data": {}}
HTML = "<html><body><h1>Sign in</h1><form>...</form></body></html>"


@pytest.mark.parametrize("answer, expected", [
    (raw_answer(HTML), "got text/html: '<html><body><h1>Sign in"),
    (raw_answer('{"run": {"info": ', "application/json"), "a JSON object"),
    (json_answer([1, 2]), "got a JSON list"),
    (json_answer({}), 'a "run" object'),
    (json_answer({"run": None}), "a run object, got a JSON NoneType"),
    (json_answer({"run": {"info": {}}}), 'a run info with "run_id"'),
    (json_answer({"run": {**GOOD_RUN, "info": {**GOOD_RUN["info"], "start_time": "soon"}}}),
     "start_time is a number"),
    (json_answer({"run": {**GOOD_RUN, "data": {"tags": {"k": "v"}}}}), "tags of a run"),
    (json_answer({"run": {**GOOD_RUN, "data": {"params": [{"key": "lr", "value": 1}]}}}),
     "param 'lr': a text value"),
    (raw_answer("[" * 100_000 + "]" * 100_000, "application/json"), "a JSON object"),
])
def test_a_bad_answer_is_a_clear_store_error(hostile, answer, expected):
    hostile.api("GET", "runs/get", answer)
    with pytest.raises(StoreError) as refused:
        store_of(hostile).get("run", RUN_ID)
    message = str(refused.value)
    assert expected in message, message
    assert hostile.url in message and "GET runs/get" in message and "expected" in message


@pytest.mark.parametrize("call, endpoint, answer", [
    (lambda s: s.find("project"), ("POST", "experiments/search"), {"experiments": "none"}),
    (lambda s: s.find("project"), ("POST", "experiments/search"), {"experiments": [{"name": 1}]}),
    (lambda s: s.find("registered_model"), ("GET", "registered-models/search"),
     {"registered_models": [{"nom": "m"}]}),
    (lambda s: s.get("registered_model", "m"), ("GET", "registered-models/get"), {}),
    (lambda s: s.get("project", "1"), ("GET", "experiments/get"), {"experiment": {"id": 1}}),
    (lambda s: s.get_or_create("project", "p"), ("GET", "experiments/get-by-name"),
     {"experiment": []}),
    (lambda s: s.get("model_version", "m/1"), ("GET", "registered-models/get"),
     {"registered_model": {"name": "m"}}),
])
def test_every_endpoint_checks_its_answer(hostile, call, endpoint, answer):
    hostile.api(*endpoint, json_answer(answer))
    if endpoint[1] == "registered-models/get" and "registered_model" in answer:
        hostile.api("GET", "model-versions/get", json_answer({"model_version": {"version": "x"}}))
    with pytest.raises(StoreError) as refused:
        call(store_of(hostile))
    assert hostile.url in str(refused.value) and "expected" in str(refused.value)


def test_a_field_value_changed_on_the_server_is_named(hostile):
    run = {**GOOD_RUN, "data": {"metrics": [{"key": "acc", "value": "high"}]}}
    hostile.api("GET", "runs/get", json_answer({"run": run}))
    with pytest.raises(StoreError, match="metrics value we cannot read") as refused:
        store_of(hostile).get_fields("run", RUN_ID, "metrics")
    assert hostile.url in str(refused.value)


def test_a_repeated_page_token_stops_the_listing(hostile):
    hostile.api("POST", "experiments/search",
                json_answer({"experiments": [], "next_page_token": "again"}))
    with pytest.raises(StoreError, match="page token") as refused:
        store_of(hostile).find("project")
    assert len(hostile.asked("experiments/search")) == 2
    assert hostile.url in str(refused.value) and "POST experiments/search" in str(refused.value)


def test_endless_fresh_page_tokens_are_bounded(hostile):
    count = iter(range(10 ** 9))
    hostile.api("POST", "experiments/search", lambda request: (
        200, "application/json", json.dumps({"experiments": [],
                                             "next_page_token": f"t{next(count)}"}).encode()))
    started = time.monotonic()
    with pytest.raises(StoreError, match=f"within {MAX_PAGES} pages"):
        store_of(hostile).find("project")
    assert len(hostile.asked("experiments/search")) == MAX_PAGES
    assert time.monotonic() - started < 60


# -- URLs and secrets ------------------------------------------------------------------------------
PASSWORD = "hunter2-Secret-pw"


@pytest.mark.parametrize("url, expected", [
    ("http://127.0.0.1:99999", "Port out of range"),
    (f"http://admin:{PASSWORD}@:5000", "has no host name"),
    (f"http://admin:{PASSWORD}@", "has no host name"),
    (f"ftp://admin:{PASSWORD}@host:5000", "is not an http(s) URL"),
    (f"http://admin:{PASSWORD}@[::1", "cannot be parsed"),
    (f"http://admin:{PASSWORD}@host:port", "cannot be parsed"),
    ("http://127.0.0.1:", "no usable port"),
    (f"http://admin:{PASSWORD}@127.0.0.1:0", "no usable port"),
])
def test_a_bad_url_is_refused_up_front_without_its_password(url, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URL mistaken for a folder name would show up here
    for opener in (MlflowStore, lambda u: Client(store=u)):
        started = time.monotonic()
        with pytest.raises(StoreError) as refused:
            opener(url)
        assert time.monotonic() - started < 1  # no network attempt
        message = str(refused.value)
        assert expected in message and "e.g. http://127.0.0.1:5000" in message
        assert PASSWORD not in message + repr(refused.value)
        if "admin" in url:
            assert "admin:***@" in message
    assert list(tmp_path.iterdir()) == []


def test_secrets_are_scrubbed_from_what_the_server_echoes(hostile):
    token = "tok-Very-Secret-42"

    def echo(request):  # a proxy's error page that repeats the request headers
        return 502, "text/html", f"<pre>{request.headers}</pre>".encode()

    hostile.api("GET", "runs/get", echo)
    store = store_of(hostile, env={"MLFLOW_TRACKING_TOKEN": token})
    with pytest.raises(StoreError) as failed:
        store.get("run", RUN_ID)
    assert hostile.asked("runs/get")[0].headers["Authorization"] == f"Bearer {token}"
    assert "Bearer ***" in str(failed.value)
    for text in (str(failed.value), repr(store), repr(store.http)):
        assert token not in text


def test_check_reports_a_hostile_server_and_never_crashes(hostile):
    publish_directory(hostile, {"ok.txt": b"fine"},
                      [{"path": "ok.txt", "is_dir": False, "file_size": 4},
                       {"path": "../../x", "is_dir": False, "file_size": 1}])
    run = json.loads(hostile.routes[("GET", "/api/2.0/mlflow/runs/get")](None)[2])["run"]
    run["data"]["tags"].append({"key": "verta_jupyter.artifact.broken", "value": "{not json"})
    hostile.api("POST", "experiments/search", json_answer({"experiments": [
        {"experiment_id": "1", "name": "p/e",
         "tags": [{"key": "verta_jupyter.kind", "value": "experiment"}]}]}))
    hostile.api("POST", "runs/search", json_answer({"runs": [run]}))
    result = store_of(hostile).check()
    assert not result.ok and result.counts == {"runs": 1, "artifacts": 2}
    assert any("'data'" in p and "'../../x'" in p for p in result.problems), result.problems
    assert any("'broken'" in p and "damaged" in p for p in result.problems), result.problems


def test_an_answer_without_end_is_cut_at_the_bound(hostile):
    """A server streaming JSON for ever (or a decompression bomb) must not fill our memory."""
    def endless(request):
        return 200, "application/json", b'{"run": "' + b"x" * (3 << 20)

    hostile.api("GET", "runs/get", endless)
    store = store_of(hostile)
    store.http.max_answer = 1 << 20  # the default is 256 MiB; the rule is the same
    with pytest.raises(StoreError, match="an answer of at most 1,048,576 bytes") as refused:
        store.get("run", RUN_ID)
    assert hostile.url in str(refused.value) and "GET runs/get" in str(refused.value)


def test_a_huge_error_page_is_read_only_in_part(hostile):
    hostile.api("GET", "runs/get", raw_answer("<p>" + "oops " * (2 << 20), status=400))
    with pytest.raises(StoreError, match="HTTP 400: <p>oops oops") as refused:
        store_of(hostile).get("run", RUN_ID)
    assert len(str(refused.value)) < 1000


def test_a_redirect_to_another_host_does_not_carry_the_credentials(hostile):
    elsewhere = HostileServer()
    try:
        elsewhere.api("GET", "runs/get", json_answer({}, 404))
        hostile.api("GET", "runs/get", lambda request: (
            302, "text/html", b"", {"Location": f"{elsewhere.url}/api/2.0/mlflow/runs/get"}))
        store = store_of(hostile, env={"MLFLOW_TRACKING_TOKEN": "tok-Redirect-Secret"})
        with pytest.raises(StoreError):
            store.get("run", RUN_ID)
        assert hostile.asked("runs/get")[0].headers["Authorization"] == "Bearer tok-Redirect-Secret"
        followed = elsewhere.asked("runs/get")
        assert followed and "Authorization" not in followed[0].headers
    finally:
        elsewhere.close()
