"""A real Jupyter server (JupyterLab 4 or Notebook 7) on 127.0.0.1, isolated in temporary folders.

Every folder Jupyter would read or write (config, data, runtime, settings, workspaces, the
kernelspec path, IPython's profile, the verta store) points into one temporary base folder, so a
test run neither sees nor touches the user's own Jupyter setup. The server runs in its own process
group; `stop()` asks it to shut down (which also shuts its kernels down), then kills the group and
any process that still carries this server's marker in its environment (kernels run in sessions
of their own, and panel workers are their children).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

STARTUP_TIMEOUT = 60.0
MARKER = "VJ_E2E_SERVER"

# Lab settings that would otherwise reach for the network or pop up over the notebook.
OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"},
    "@jupyterlab/extensionmanager-extension:plugin": {"enabled": False},
}


@dataclass
class JupyterServer:
    """A running server: `url(path)` builds an address with the token; `stop()` ends it."""

    kind: str
    port: int
    token: str
    root: Path
    base: Path
    process: subprocess.Popen
    log_path: Path
    marker: str
    _log_thread: threading.Thread | None = field(default=None, repr=False)

    def url(self, path: str = "") -> str:
        joiner = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}{joiner}token={self.token}"

    def notebook_url(self, name: str) -> str:
        """Where a person would open notebook `name` (relative to the server root)."""
        if self.kind == "lab":
            return self.url(f"lab/tree/{name}?reset")
        return self.url(f"notebooks/{name}")

    def add_notebook(self, source: Path, name: str | None = None) -> str:
        """Copy a notebook into the server root; return its name there."""
        name = name or source.name
        shutil.copyfile(source, self.root / name)
        return name

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> list[int]:
        """Shut the server and its kernels down; return pids that had to be killed."""
        if self.process.poll() is None:
            _request_shutdown(self)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(self.process.pid)
        self.process.wait(timeout=10)
        if self._log_thread is not None:
            self._log_thread.join(timeout=5)
        return kill_marked(self.marker)


def in_ci() -> bool:
    """The rule of tests/conftest.py's `in_ci` (a nested conftest cannot import that by name)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_without_playwright() -> None:
    """Skip the calling test module when Playwright is missing, except in CI, where it fails."""
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        import pytest

        reason = "the playwright package is not installed (pip install -e .[test])"
        if in_ci():
            pytest.fail(f"{reason}: required in CI", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(kind: str, base: Path, *, extra_env: dict[str, str] | None = None) -> JupyterServer:
    """Start `jupyter lab` or `jupyter notebook` under `base`; return once it serves requests."""
    if kind not in ("lab", "notebook"):
        raise ValueError(f"kind must be 'lab' or 'notebook', not {kind!r}")
    dirs = _make_dirs(base)
    port, token, marker = free_port(), secrets.token_hex(16), secrets.token_hex(8)
    env = _server_env(dirs, marker, extra_env or {})
    log_path = base / f"jupyter-{kind}.log"
    process = subprocess.Popen(
        _server_command(kind, port, token, dirs),
        cwd=dirs["root"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = JupyterServer(kind, port, token, dirs["root"], base, process, log_path, marker)
    ready = threading.Event()
    server._log_thread = threading.Thread(
        target=_pump_log, args=(process, log_path, f"127.0.0.1:{port}/", ready), daemon=True
    )
    server._log_thread.start()
    try:
        if not ready.wait(STARTUP_TIMEOUT) or process.poll() is not None:
            raise RuntimeError("no address in its log")
        _check_status(server)
    except (OSError, RuntimeError) as exc:
        server.stop()
        raise RuntimeError(
            f"jupyter {kind} did not start on port {port} ({exc}):\n{server.log()[-4000:]}"
        ) from exc
    return server


def _make_dirs(base: Path) -> dict[str, Path]:
    names = ["root", "config", "data", "runtime", "settings", "workspaces", "app_settings",
             "jupyter_path", "ipython", "store", "cache"]
    dirs = {name: base / name for name in names}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    (dirs["app_settings"] / "overrides.json").write_text(json.dumps(OVERRIDES, indent=1))
    # Nothing here needs language servers; leaving them off saves startup time.
    server_config = {"ServerApp": {"jpserver_extensions": {"jupyter_lsp": False}}}
    (dirs["config"] / "jupyter_server_config.json").write_text(json.dumps(server_config))
    _write_kernelspec(dirs["jupyter_path"])
    return dirs


def _write_kernelspec(jupyter_path: Path) -> None:
    # Pin the kernel to this interpreter (the venv's), whatever kernels the machine has.
    kernel_dir = jupyter_path / "kernels" / "python3"
    kernel_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (kernel_dir / "kernel.json").write_text(json.dumps(spec, indent=1))


def _server_env(dirs: dict[str, Path], marker: str, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        JUPYTER_PATH=str(dirs["jupyter_path"]),
        JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
        JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
        IPYTHONDIR=str(dirs["ipython"]),
        VERTA_JUPYTER_STORE=str(dirs["store"]),
        VERTA_JUPYTER_CACHE=str(dirs["cache"]),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        **{MARKER: marker},
    )
    env.update(extra)
    return env


def _server_command(kind: str, port: int, token: str, dirs: dict[str, Path]) -> list[str]:
    app = "LabApp" if kind == "lab" else "JupyterNotebookApp"
    command = [
        sys.executable, "-m", "jupyter", kind,
        "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--port={port}", "--port-retries=0",
        f"--ServerApp.token={token}", "--ServerApp.password=",
        f"--ServerApp.root_dir={dirs['root']}",
        f"--{app}.app_settings_dir={dirs['app_settings']}",
        # window.jupyterapp lets a test ask whether the kernel is connected (see ui.py).
        f"--{app}.expose_app_in_browser=True",
    ]
    if kind == "lab":
        command += ["--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                    "--LabApp.news_url=None"]
    return command


def _pump_log(process: subprocess.Popen, log_path: Path, ready_text: str, ready: threading.Event):
    # The server says where it listens once it is ready: that line is the start signal.
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace")
            log.write(line)
            log.flush()
            if ready_text in line:
                ready.set()
    ready.set()  # the process ended: let the waiter see it rather than time out


def _check_status(server: JupyterServer) -> None:
    # The server logs its address just before its event loop binds the port, so the first
    # connection attempts may be refused: probe for a bounded moment, then ask for its status.
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline or server.process.poll() is not None:
                raise
            threading.Event().wait(0.05)
    with urllib.request.urlopen(server.url("api/status"), timeout=10) as response:
        json.load(response)


def _request_shutdown(server: JupyterServer) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/api/shutdown", method="POST",
        headers={"Authorization": f"token {server.token}"},
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except OSError:
        server.process.send_signal(signal.SIGTERM)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_marked(marker: str) -> list[int]:
    """Kill every process whose environment carries this server's marker; return their pids."""
    needle = f"{MARKER}={marker}".encode()
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                pass
    return killed
