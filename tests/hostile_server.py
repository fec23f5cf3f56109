"""A tiny hostile HTTP server on 127.0.0.1: answers whatever a test scripts, nothing else.

It stands in for a broken or malicious MLflow tracking server (or a proxy in front of one):
HTML where JSON belongs, `{}`, wrong types, page tokens that never end, artifact listings with
`..` in them. Routes are keyed by (method, path without the query); unscripted requests get a
404 in MLflow's error format. Every request is recorded, so a test can assert what the client
did (and did not) ask for.

    server = HostileServer()
    server.route("GET", "/api/2.0/mlflow/runs/get", json_answer({"run": ...}))
    ...
    server.close()
"""
from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

import pytest

#: (status, content type, body) or (status, content type, body, {extra header: value})
Answer = Callable[["Request"], tuple]
API = "/api/2.0/mlflow/"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


def json_answer(data: Any, status: int = 200) -> Answer:
    return lambda request: (status, "application/json", json.dumps(data).encode())


def raw_answer(body: bytes | str, content_type: str = "text/html", status: int = 200) -> Answer:
    data = body.encode() if isinstance(body, str) else body
    return lambda request: (status, content_type, data)


class HostileServer:
    """A scripted loopback server; `requests` lists what it was asked, in order."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        """`tls` = (certfile, keyfile) serves https instead of http."""
        self.routes: dict[tuple[str, str], Answer] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms stalls)
            timeout = 10  # a client that stalls cannot hold a thread for ever

            def log_message(self, *args):  # keep test output clean
                pass

            def _any(self):
                owner._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.port = self._server.server_address[1]
        self.scheme = "https" if tls else "http"
        if tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def route(self, method: str, path: str, answer: Answer) -> None:
        self.routes[(method, path)] = answer

    def api(self, method: str, endpoint: str, answer: Answer) -> None:
        """Script `/api/2.0/mlflow/<endpoint>`."""
        self.route(method, API + endpoint, answer)

    def asked(self, path_part: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if path_part in r.path]

    def _handle(self, handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urllib.parse.urlsplit(handler.path)
        request = Request(handler.command, urllib.parse.unquote(parts.path),
                          dict(urllib.parse.parse_qsl(parts.query)), dict(handler.headers), body)
        with self._lock:
            self.requests.append(request)
        answer = self.routes.get((request.method, request.path))
        extra: list = []
        if answer is None:
            status, content_type, data = 404, "application/json", json.dumps(
                {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "not scripted"}).encode()
        else:
            status, content_type, data, *extra = answer(request)  # extra: a dict of headers
        handler.send_response(status)
        for name, value in (extra[0] if extra else {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def hostile():
    server = HostileServer()
    yield server
    server.close()


# -- a fake run with one published artifact, for listing attacks ------------------------------
RUN_ID = "0123456789abcdef0123456789abcdef"
ROOT = f"1/{RUN_ID}/artifacts"


def script_run(server: HostileServer, tags: dict[str, str]) -> None:
    """`runs/get` answers a run (experiment 1) whose tags are `tags`."""
    run = {"info": {"run_id": RUN_ID, "experiment_id": "1", "run_name": "r", "start_time": 1,
                    "lifecycle_stage": "active", "artifact_uri": f"mlflow-artifacts:/{ROOT}"},
           "data": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}
    server.api("GET", "runs/get", json_answer({"run": run}))


def script_listing(server: HostileServer, remote: str, entries: list[dict]) -> None:
    """The artifact listing of `remote` (MLflow's proxied list: `GET ...?path=remote`)."""
    previous = server.routes.get(("GET", ARTIFACTS))
    listings = getattr(previous, "listings", {})
    listings[remote] = entries

    def answer(request: Request):
        files = listings.get(request.query.get("path", ""), [])
        return 200, "application/json", json.dumps({"files": files}).encode()

    answer.listings = listings  # type: ignore[attr-defined]
    server.route("GET", ARTIFACTS, answer)


def script_file(server: HostileServer, remote: str, data: bytes) -> None:
    server.route("GET", f"{ARTIFACTS}/{remote}", raw_answer(data, "application/octet-stream"))
