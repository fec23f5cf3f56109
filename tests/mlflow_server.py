"""A real `mlflow server` on 127.0.0.1 for tests and benchmarks, plus pytest fixtures.

The server runs from its own virtualenv (`.venv-mlflow`, made by scripts/test.sh or by hand:
`python3 -m venv .venv-mlflow && .venv-mlflow/bin/pip install mlflow`) so its pins never
constrain ours. It is ~10 processes (uvicorn/gunicorn workers, job runners): we start it in a
new session and stop the whole process group, so nothing outlives the test run.

Test files import the fixtures they need:
    from mlflow_server import mlflow_server, mlflow_bin   # noqa: F401 (pytest fixtures)
Several modules share one server per session: the fixture keeps a reference-counted singleton.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MLFLOW_BIN = Path(os.environ.get("VJ_MLFLOW_BIN", REPO / ".venv-mlflow" / "bin" / "mlflow"))
MLFLOW_PYTHON = MLFLOW_BIN.parent / "python"
START_TIMEOUT = 120.0  # first start runs ~20 s of schema migrations on 2 cores; CI can be slower

_BASIC_AUTH_INI = """[mlflow]
default_permission = READ
database_uri = sqlite:///{db}
admin_username = {user}
admin_password = {password}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_installed() -> bool:
    return MLFLOW_BIN.exists() and MLFLOW_PYTHON.exists()


def require_mlflow() -> None:
    """Skip when the mlflow virtualenv is missing, except in CI where that is a failure."""
    if mlflow_installed():
        return
    message = (f"mlflow is not installed at {MLFLOW_BIN}; run `python3 -m venv .venv-mlflow && "
               ".venv-mlflow/bin/pip install mlflow`")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


class MlflowServer:
    """One `mlflow server` process group with its SQLite database and artifact folder in `root`."""

    def __init__(self, root: Path, *, port: int | None = None, app_name: str | None = None,
                 admin: tuple[str, str] = ("admin", "verta-Jupyter-admin-pw-1")):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.app_name = app_name
        self.admin = admin
        self.proc: subprocess.Popen | None = None
        self.log_path = self.root / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [str(MLFLOW_BIN), "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
               "--artifacts-destination", str(self.root / "artifacts"), "--workers", "1"]
        if self.app_name:
            cmd += ["--app-name", self.app_name]
        return cmd

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
        if self.app_name == "basic-auth":
            ini = self.root / "basic_auth.ini"
            ini.write_text(_BASIC_AUTH_INI.format(db=self.root / "auth.db", user=self.admin[0],
                                                  password=self.admin[1]))
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "test-only-flask-secret"
        return env

    def start(self, timeout: float = START_TIMEOUT) -> "MlflowServer":
        """Start and wait until `/health` answers 200; raise with the server log otherwise."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.root, env=self.env(), stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        _register_for_exit(self)
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            try:  # waits on the process itself: returns early if it died, else polls again
                self.proc.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{self.log_tail()}")
        self.stop()
        raise RuntimeError(f"mlflow server not healthy after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL for anything left after 10 s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        _kill_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL to the group), as a crash or a pulled cable would."""
        if self.proc is not None:
            _kill_group(self.proc, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def restart(self, timeout: float = START_TIMEOUT) -> "MlflowServer":
        self.stop()
        return self.start(timeout)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the leader's pid
    except ProcessLookupError:
        pass


_LIVE: list[MlflowServer] = []


def _register_for_exit(server: MlflowServer) -> None:
    if server not in _LIVE:
        _LIVE.append(server)


@atexit.register
def _stop_all() -> None:  # a safety net if a test run is interrupted
    for server in _LIVE:
        try:
            server.stop()
        except Exception as exc:  # pragma: no cover - best effort at interpreter exit
            print(f"could not stop mlflow server {server.url}: {exc}", file=sys.stderr)


# -- pytest fixtures -------------------------------------------------------------------------------
_shared: dict[str, object] = {"server": None, "users": 0}


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> MlflowServer:
    """One plain server (SQLite + local proxied artifacts) shared by every test module."""
    require_mlflow()
    if _shared["server"] is None:
        _shared["server"] = MlflowServer(tmp_path_factory.mktemp("mlflow-shared")).start()
    _shared["users"] += 1
    yield _shared["server"]
    _shared["users"] -= 1
    if _shared["users"] == 0:
        _shared["server"].stop()
        _shared["server"] = None


@pytest.fixture(scope="session")
def mlflow_bin() -> Path:
    """The `mlflow` command of the server's virtualenv (for `mlflow models serve`)."""
    require_mlflow()
    return MLFLOW_BIN


@pytest.fixture
def own_mlflow_server(tmp_path_factory):
    """A server only this test uses (for killing and restarting it), stopped afterwards."""
    require_mlflow()
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-own"))
    try:
        yield server.start()
    finally:
        server.stop()


# -- network faults on loopback ----------------------------------------------------------------
class FaultProxy:
    """A loopback HTTP proxy in front of a real server that injects failures on demand.

    `fail_next(n, status)` answers the next n requests with `status` without forwarding them;
    `fail_after_forward(path_part, status)` forwards the next request whose path contains
    `path_part` (the server acts on it) but answers `status`, like a gateway that lost the
    reply. `served` counts every injected failure.
    """

    def __init__(self, upstream_port: int):
        import http.server
        import threading

        self.upstream_port = upstream_port
        self.served = 0
        self._before: list[int] = []
        self._after: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _any(self):
                proxy._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._before.extend([status] * n)

    def fail_after_forward(self, path_part: str, status: int = 502) -> None:
        with self._lock:
            self._after.append((path_part, status))

    def _handle(self, handler) -> None:
        import http.client

        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            status = self._before.pop(0) if self._before else None
            after = next((rule for rule in self._after if rule[0] in handler.path), None)
            if status is None and after is not None:
                self._after.remove(after)
        if status is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
            headers = {k: v for k, v in handler.headers.items()
                       if k.lower() not in ("host", "content-length", "connection")}
            headers["Host"] = f"127.0.0.1:{self.upstream_port}"
            conn.request(handler.command, handler.path, body=body, headers=headers)
            upstream = conn.getresponse()
            data = upstream.read()
            conn.close()
            if after is None:
                return _reply(handler, upstream.status, data,
                              upstream.getheader("Content-Type", "application/json"))
            status = after[1]
        with self._lock:
            self.served += 1
        _reply(handler, status, b'{"error_code": "TEMPORARILY_UNAVAILABLE", '
                                b'"message": "injected by the test proxy"}', "application/json")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _reply(handler, status: int, data: bytes, content_type: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class SilentServer:
    """A loopback socket that accepts connections and never answers (a hung server)."""

    def __init__(self):
        import threading

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(conn)  # read nothing, answer nothing

    def close(self) -> None:
        self._closed.set()
        self._sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def fault_proxy(mlflow_server):
    """A `FaultProxy` in front of the shared server."""
    proxy = FaultProxy(mlflow_server.port)
    yield proxy
    proxy.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()
