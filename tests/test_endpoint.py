"""Endpoint: MLflow's and Verta's prediction protocols against real loopback HTTP servers.

(The same client against a real `mlflow models serve` is in test_mlflow_export.py.)"""
from __future__ import annotations

import http.server
import json
import math
import pickle
import threading
import time

import numpy as np
import pandas as pd
import pytest

from mlflow_server import free_port, silent_server  # noqa: F401 (pytest fixture)
from verta_jupyter import Endpoint
from verta_jupyter.panel.endpoint import EndpointError
from verta_jupyter.errors import PredictError

TOKEN = "tok-Verta-123"


def _no_nan(token):
    raise ValueError(f"non-standard JSON token {token}")


class ModelServer:
    """A real HTTP server on 127.0.0.1 that behaves like the serving stacks we talk to."""

    def __init__(self):
        self.requests: list[tuple[str, dict, object]] = []
        self.busy_left = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                data = json.loads(body, parse_constant=_no_nan)  # strict JSON or we fail
                server.requests.append((self.path, dict(self.headers), data))
                status, answer = server.answer(self.path, self.headers, data)
                raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def answer(self, path, headers, data):
        if headers.get("Content-Type") != "application/json":
            return 415, {"message": "send JSON"}
        if path == "/invocations":
            return 200, {"predictions": {"echo": data["inputs"]}}
        if path == "/api/v1/predict/abc":
            if headers.get("Access-Token") != TOKEN:
                return 401, {"message": f"invalid token {headers.get('Access-Token')!r}"}
            return 200, {"echo": data}
        if path == "/boom":
            return 500, {"error_code": "INTERNAL_ERROR", "message": "model raised ValueError: boom"}
        if path == "/busy":
            if self.busy_left:
                self.busy_left -= 1
                return 503, {"message": "warming up"}
            return 200, {"ok": True}
        if path == "/not-json":
            return 200, b"<html>gateway page</html>"
        if path == "/deep":
            return 200, b"[" * 100_000 + b"]" * 100_000
        if path == "/echo-headers":  # a proxy error page that repeats what it was sent
            return 502, {"message": f"bad gateway for {dict(headers)}"}
        return 404, {"message": f"no route {path}"}

    def close(self):
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def server():
    s = ModelServer()
    yield s
    s.close()


def test_mlflow_protocol(server):
    endpoint = Endpoint(f"{server.url}/invocations")
    assert endpoint.protocol == "mlflow"
    assert endpoint.predict({"text": "hi"}) == {"echo": {"text": "hi"}}
    path, headers, body = server.requests[-1]
    assert body == {"inputs": {"text": "hi"}} and headers["Content-Type"] == "application/json"


def test_verta_protocol_sends_the_access_token(server):
    endpoint = Endpoint(f"{server.url}/api/v1/predict/abc", token=TOKEN)
    assert endpoint.protocol == "verta"
    assert endpoint.predict([1, 2]) == {"echo": [1, 2]}
    assert server.requests[-1][1]["Access-Token"] == TOKEN
    assert json.loads(endpoint.predict_json('{"a": 1}')) == {"echo": {"a": 1}}  # compact with orjson


def test_known_types_are_sent_as_strict_json(server):
    frame = pd.DataFrame({"x": [1.5, math.nan], "name": ["a", "b"]})
    got = Endpoint(f"{server.url}/invocations").predict({"frame": frame, "arr": np.arange(3),
                                                         "n": np.float32(0.5)})
    assert got == {"echo": {"frame": [{"x": 1.5, "name": "a"}, {"x": None, "name": "b"}],
                            "arr": [0, 1, 2], "n": 0.5}}


def test_wrong_token_gives_status_and_message_without_the_token(server):
    endpoint = Endpoint(f"{server.url}/api/v1/predict/abc", token="wrong-Secret-tok")
    with pytest.raises(EndpointError) as failed:
        endpoint.predict({"a": 1})
    message = str(failed.value)
    assert failed.value.status == 401 and "401" in message and "invalid token" in message
    assert "wrong-Secret-tok" not in message and "wrong-Secret-tok" not in repr(endpoint)
    with pytest.raises(TypeError):
        pickle.dumps(endpoint)


def test_server_errors_carry_status_and_message_and_are_not_retried(server):
    with pytest.raises(PredictError) as failed:
        Endpoint(f"{server.url}/boom").predict({"a": 1})
    assert failed.value.status == 500
    assert "HTTP 500" in str(failed.value) and "model raised ValueError: boom" in str(failed.value)
    assert len(server.requests) == 1  # a 500 may have run the model: never sent twice


def test_503_is_retried(server):
    server.busy_left = 2
    assert Endpoint(f"{server.url}/busy", backoff=0.01).predict({}) == {"ok": True}
    assert len(server.requests) == 3


def test_non_json_answer_is_a_clear_error(server):
    with pytest.raises(EndpointError, match="not JSON"):
        Endpoint(f"{server.url}/not-json").predict({})
    with pytest.raises(EndpointError, match="predictions"):
        Endpoint(f"{server.url}/busy", protocol="mlflow").predict({})  # no "predictions"


def test_refused_connection_is_retried_then_reported():
    url = f"http://127.0.0.1:{free_port()}/invocations"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(EndpointError, match="could not reach") as failed:
        Endpoint(url, attempts=3, backoff=0.01).predict({"a": 1})
    assert url in str(failed.value) and time.monotonic() - started < 5


def test_a_server_that_never_answers_times_out(silent_server):
    started = time.monotonic()
    with pytest.raises(EndpointError, match="timeout"):
        Endpoint(f"{silent_server.url}/invocations", timeout=1.0).predict({"a": 1})
    assert time.monotonic() - started < 5  # one attempt: the model may be running


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="protocol"):
        Endpoint("http://127.0.0.1:1/x", protocol="grpc")


PASSWORD = "pw-Endpoint-Secret"


@pytest.mark.parametrize("url, expected", [
    ("http://127.0.0.1:99999/invocations", "Port out of range"),
    (f"http://admin:{PASSWORD}@/invocations", "has no host name"),
    (f"http://admin:{PASSWORD}@:5001/invocations", "has no host name"),
    (f"ftp://admin:{PASSWORD}@host/invocations", "is not an http(s) URL"),
    (f"http://admin:{PASSWORD}@[::1/invocations", "cannot be parsed"),
    ("http://127.0.0.1:/invocations", "no usable port"),
    ("127.0.0.1:5001/invocations", "is not an http(s) URL"),
])
def test_a_bad_url_is_refused_up_front_without_its_password(url, expected):
    started = time.monotonic()
    with pytest.raises(EndpointError) as refused:
        Endpoint(url)
    message = str(refused.value)
    assert expected in message and "e.g. http://127.0.0.1:5000" in message
    assert PASSWORD not in message and time.monotonic() - started < 1


def test_url_credentials_are_basic_auth_and_never_shown(server):
    import base64

    assert Endpoint(f"http://admin:{PASSWORD}@h:1/p?x=1").url == "http://h:1/p?x=1"  # query kept
    endpoint = Endpoint(server.url.replace("//", f"//admin:{PASSWORD}@") + "/echo-headers")
    assert PASSWORD not in endpoint.url + repr(endpoint) and "auth=basic" in repr(endpoint)
    with pytest.raises(EndpointError) as failed:
        endpoint.predict({"a": 1})
    sent = server.requests[-1][1]["Authorization"]
    assert sent == "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    assert "bad gateway" in str(failed.value)
    for secret in (PASSWORD, sent.split()[1]):  # the echoed header is scrubbed, encoded or not
        assert secret not in str(failed.value)


def test_an_answer_nested_past_reason_is_a_clear_error(server):
    with pytest.raises(EndpointError, match="not JSON"):
        Endpoint(f"{server.url}/deep").predict({})
