"""Start a worker process and talk to it over two pipes, with deadlines (the kernel side).

The worker runs in its own session (so a timeout can kill the model's children too), in a
fresh temporary directory, under `python -I`; stderr is drained by a thread into a bounded
buffer, so a model printing megabytes never blocks and a crash still leaves its last words.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .protocol import HEADER

# The child imports exactly the verta_jupyter that started it, whatever the other interpreter has
# installed, without putting this package's parent folder (maybe a whole site-packages built for
# another Python) on the child's sys.path.
_BOOTSTRAP = """import importlib.util, sys
spec = importlib.util.spec_from_file_location("verta_jupyter", %r, submodule_search_locations=[%r])
package = importlib.util.module_from_spec(spec)
sys.modules["verta_jupyter"] = package
spec.loader.exec_module(package)
from verta_jupyter.worker.__main__ import main
sys.exit(main(sys.argv[1:]))
"""
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_STDERR_KEEP = 64 * 1024  # enough for a faulthandler dump; a model printing megabytes is fine
# the worker process's own files: faulthandler lists their frames under the model's
_WORKER_FILES = tuple(str(Path(__file__).resolve().with_name(name))
                      for name in ("__main__.py", "protocol.py"))


def child_command(python: str, arguments: list[str]) -> list[str]:
    """The command line of every fresh process: isolated mode (no user site, no PYTHON* variables,
    no current folder on sys.path), this verta_jupyter, the worker's `arguments`."""
    init = str(_PACKAGE_DIR / "__init__.py")
    return [python, "-I", "-c", _BOOTSTRAP % (init, str(_PACKAGE_DIR)), *arguments]


def child_environment() -> dict[str, str]:
    """The environment of every fresh process: ours without PYTHON* variables, which would let the
    notebook's interpreter settings (PYTHONPATH, PYTHONSTARTUP, ...) leak into the proof."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


class Timeout(Exception):
    """The deadline passed before the worker read the request or answered it."""


class Gone(Exception):
    """The worker's pipes closed: it exited or was killed."""


class WorkerProcess:
    """One running worker: the process (its own session), two pipe ends, a stderr drain."""

    def __init__(self, python: str, package_dir: Path, artifacts: dict, *, use_pickle: bool = False):
        import collections
        import subprocess
        import tempfile
        import threading

        self.cwd = tempfile.mkdtemp(prefix="vj-worker-")
        req_r, self.req_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        arguments = [str(package_dir), "--artifacts", json.dumps(artifacts), "--fds", f"{req_r},{resp_w}"]
        if use_pickle:
            arguments.append("--use-pickle")
        try:
            self.popen = subprocess.Popen(child_command(python, arguments), cwd=self.cwd,
                                          env=child_environment(), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          pass_fds=(req_r, resp_w), start_new_session=True)
        finally:
            os.close(req_r)
            os.close(resp_w)
        os.set_blocking(self.req_w, False)
        os.set_blocking(self.resp_r, False)
        self.stderr: collections.deque[bytes] = collections.deque()
        self.drain = threading.Thread(target=self._drain, name="vj-worker-stderr", daemon=True)
        self.drain.start()

    def _drain(self) -> None:
        fd, kept = self.popen.stderr.fileno(), 0
        while chunk := os.read(fd, 65536):
            self.stderr.append(chunk)
            kept += len(chunk)
            while kept > _STDERR_KEEP and len(self.stderr) > 1:
                kept -= len(self.stderr.popleft())

    def stderr_text(self) -> str:
        self.drain.join(timeout=2.0)
        return b"".join(self.stderr)[-_STDERR_KEEP:].decode(errors="replace")

    def send(self, payload: bytes, deadline: float) -> None:
        view = memoryview(payload)
        while view:
            try:
                view = view[os.write(self.req_w, view):]
            except BlockingIOError:
                _wait(self.req_w, "w", deadline)
            except (BrokenPipeError, OSError):
                raise Gone() from None

    def receive(self, deadline: float) -> dict:
        size = HEADER.unpack(self._read(HEADER.size, deadline))[0]
        return json.loads(self._read(size, deadline))

    def _read(self, size: int, deadline: float) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            try:
                chunk = os.read(self.resp_r, min(size - len(chunks), 1 << 22))
            except BlockingIOError:
                _wait(self.resp_r, "r", deadline)
                continue
            if not chunk:
                raise Gone()
            chunks += chunk
        return bytes(chunks)

    def exit_description(self) -> str:
        import signal
        import subprocess

        try:
            code = self.popen.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.stop()
            return "stopped answering (killed)"
        if code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with code {code}"

    def stop(self) -> None:
        import shutil
        import signal

        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # the whole group: the model's children too
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait()
        for fd in (self.req_w, self.resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.drain.join(timeout=2.0)
        self.popen.stderr.close()
        shutil.rmtree(self.cwd, ignore_errors=True)


def _wait(fd: int, mode: str, deadline: float) -> None:
    import select

    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise Timeout()
    poller = select.poll()
    poller.register(fd, select.POLLIN if mode == "r" else select.POLLOUT)
    if not poller.poll(remaining * 1000):
        raise Timeout()


def model_stack(stderr: str) -> str:
    """The model's last words from a dead worker's stderr: the faulthandler dump if there is
    one (else the last 30 lines), without the worker's own frames."""
    fatal = stderr.find("Fatal Python error")
    trace = stderr[fatal:] if fatal >= 0 else "\n".join(stderr.splitlines()[-30:])
    return "\n".join(line for line in trace.splitlines()
                     if not any(f in line for f in _WORKER_FILES) and 'File "<string>"' not in line)
