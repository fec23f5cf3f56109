"""Run a model package in its own process and answer predict requests with JSON.

`python -m verta_jupyter.worker PACKAGE_DIR [--artifacts JSON]` rebuilds the class from the
package (`load_package`: source, digests verified), builds `cls(artifacts=...)` and answers
requests `{"data": ...}` with `{"ok": true, "output": ...}` — exactly what a deployment does, so
a crash, a hang or a dependency on notebook state shows up here and never in the kernel.

Frames are length-prefixed JSON on two dedicated pipes (`--fds R,W`, used by `WorkerClient`);
run by hand it reads and writes one JSON document per line on stdin/stdout. Either way fd 1 is
pointed at stderr first, so whatever the model prints can never corrupt a reply, and
faulthandler is on, so a segfault or abort still leaves the model's Python stack on stderr.
"""
from __future__ import annotations

import argparse
import atexit
import faulthandler
import json
import os
import struct
import sys
import time
import traceback
import weakref
from pathlib import Path
from typing import Any

from .errors import JsonConversionError, PredictError, WorkerCrashedError, WorkerTimeoutError
from .jsonify import convert_input, to_json_compatible

__all__ = ["WorkerClient", "InProcessPredictor", "PredictError", "WorkerCrashedError",
           "WorkerTimeoutError", "main"]

_HEADER = struct.Struct(">I")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker process; returns the exit code."""
    args = _parse(argv)
    faulthandler.enable()
    if args.fds:
        read_fd, write_fd = (int(x) for x in args.fds.split(","))
        channel: _Channel = _FramedChannel(read_fd, write_fd)
    else:
        channel = _LineChannel(0, os.dup(1))
    os.dup2(2, 1)  # the model's prints go to stderr, never into a reply
    started = time.perf_counter()
    try:
        model, info = _build(Path(args.package), json.loads(args.artifacts))
    except BaseException as exc:  # noqa: BLE001 - report any failure to build, then exit
        channel.send({"ok": False, "kind": "load", "error": _one_line(exc),
                      "traceback": model_traceback(exc, [Path(args.package)])})
        return 1
    channel.send({"ok": True, "load_seconds": time.perf_counter() - started, **info})
    roots = [Path(info["package"])]
    while (request := channel.receive()) is not None:
        channel.send(answer(model, request, roots))
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m verta_jupyter.worker",
                                     description="Serve predict requests for a model package.")
    parser.add_argument("package", help="model package directory (CapturedModel.save / download_model)")
    parser.add_argument("--artifacts", default="{}", help='JSON object {"key": "/local/path"}')
    parser.add_argument("--fds", default="", help="R,W pipe fds for length-prefixed frames")
    return parser.parse_args(argv)


def _build(package: Path, artifacts: dict) -> tuple[Any, dict]:
    from .rebuild import load_package

    cls = load_package(package)
    meta = cls.__verta_package__
    model = cls(artifacts=artifacts)
    return model, {"class_name": cls.__name__, "digest": meta["digest"], "package": meta["path"],
                   "loaded_from": meta["loaded_from"], "notes": meta["notes"],
                   "python": sys.version.split()[0], "pid": os.getpid()}


def answer(model: Any, request: dict, roots: list[Path]) -> dict:
    """One predict request -> reply: convert input, predict, convert output, each kept apart."""
    try:
        data = convert_input(model.predict, request["data"])
    except (JsonConversionError, KeyError, TypeError) as exc:
        return {"ok": False, "kind": "input", "error": _one_line(exc)}
    started = time.perf_counter()
    try:
        output = model.predict(data)
    except KeyboardInterrupt:  # the user interrupted an in-process call: not the model's fault
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a model is a model error too
        return {"ok": False, "kind": "model", "error": _one_line(exc),
                "traceback": model_traceback(exc, roots)}
    seconds = time.perf_counter() - started
    try:
        return {"ok": True, "output_json": _encode_output(output), "seconds": seconds}
    except JsonConversionError as exc:
        return {"ok": False, "kind": "output", "error": str(exc), "path": exc.path,
                "type_name": exc.type_name, "seconds": seconds}


def _encode_output(output: Any) -> str:
    """Strict JSON text of `output`: the C encoder when the output is plain JSON already (it
    refuses NaN and unknown types, and then the known-types conversion takes over)."""
    try:
        return json.dumps(output, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(to_json_compatible(output), allow_nan=False)


def _encode_reply(message: dict) -> bytes:
    """The reply as JSON bytes; an already-encoded output is spliced in, not re-encoded."""
    if "output_json" not in message:
        return json.dumps(message, allow_nan=False).encode()
    rest = {k: v for k, v in message.items() if k != "output_json"}
    return (json.dumps(rest, allow_nan=False)[:-1] + ', "output": ' + message["output_json"]
            + "}").encode()


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def model_traceback(exc: BaseException, roots: list[Path]) -> str:
    """The traceback trimmed to the model's own frames (files under `roots`).

    Our frames (worker, jsonify, rebuild) are dropped; the frame that raised is kept even when
    it is inside a library, since that is where the message comes from.
    """
    te = traceback.TracebackException.from_exception(exc, capture_locals=False)
    frames = list(te.stack)
    ours = str(Path(__file__).resolve().parent)
    resolved = [str(r.resolve()) for r in roots]
    kept = [f for f in frames if any(f.filename.startswith(r) for r in resolved)]
    if not kept:
        kept = [f for f in frames if not f.filename.startswith(ours)]
    if frames and frames[-1] not in kept:
        kept.append(frames[-1])
    stack = traceback.StackSummary.from_list(kept)
    return "Traceback (most recent call last):\n" + "".join(stack.format()) + \
        "".join(te.format_exception_only())


class _Channel:
    def send(self, message: dict) -> None:
        raise NotImplementedError

    def receive(self) -> dict | None:
        raise NotImplementedError


class _FramedChannel(_Channel):
    """4-byte big-endian length, then UTF-8 JSON: no delimiter scanning, any payload size."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd, self.write_fd = read_fd, write_fd

    def send(self, message: dict) -> None:
        body = _encode_reply(message)
        _write_all(self.write_fd, _HEADER.pack(len(body)) + body)

    def receive(self) -> dict | None:
        header = _read_exact(self.read_fd, _HEADER.size)
        if header is None:
            return None
        body = _read_exact(self.read_fd, _HEADER.unpack(header)[0])
        return None if body is None else json.loads(body)


class _LineChannel(_Channel):
    """One JSON document per line, for people driving the worker from a shell."""

    def __init__(self, read_fd: int, write_fd: int):
        self.reader = os.fdopen(read_fd, "rb")
        self.write_fd = write_fd

    def send(self, message: dict) -> None:
        _write_all(self.write_fd, _encode_reply(message) + b"\n")

    def receive(self) -> dict | None:
        while line := self.reader.readline():
            if line.strip():
                request = json.loads(line)
                # by hand, a bare JSON value is the data itself
                return request if isinstance(request, dict) and "data" in request else {"data": request}
        return None


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = os.read(fd, min(size - len(chunks), 1 << 20))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# -- the kernel side ----------------------------------------------------------------------------

_BOOTSTRAP = """import sys
try:
    import verta_jupyter.worker as w
except ImportError:  # an interpreter without verta_jupyter installed: use this checkout
    sys.path.append(%r)
    import verta_jupyter.worker as w
sys.exit(w.main(sys.argv[1:]))
"""
_STDERR_KEEP = 64 * 1024  # enough for a faulthandler dump; a model printing megabytes is fine


class _Timeout(Exception):
    pass


class _Gone(Exception):
    pass


class _Process:
    """One running worker: the process (its own session), two pipe ends, a stderr drain."""

    def __init__(self, python: str, package_dir: Path, artifacts: dict):
        import collections
        import subprocess
        import tempfile
        import threading

        self.cwd = tempfile.mkdtemp(prefix="vj-worker-")
        req_r, self.req_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        command = [python, "-I", "-c", _BOOTSTRAP % str(Path(__file__).resolve().parents[1]),
                   str(package_dir), "--artifacts", json.dumps(artifacts), "--fds", f"{req_r},{resp_w}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        try:
            self.popen = subprocess.Popen(command, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
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
                raise _Gone() from None

    def receive(self, deadline: float) -> dict:
        size = _HEADER.unpack(self._read(_HEADER.size, deadline))[0]
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
                raise _Gone()
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
        raise _Timeout()
    poller = select.poll()
    poller.register(fd, select.POLLIN if mode == "r" else select.POLLOUT)
    if not poller.poll(remaining * 1000):
        raise _Timeout()


def _encode_request(data: Any) -> bytes:
    try:  # the C encoder first: plain JSON input costs no Python walk
        body = json.dumps({"data": data}, allow_nan=False).encode()
    except (TypeError, ValueError):
        body = json.dumps({"data": to_json_compatible(data, root="data")}, allow_nan=False).encode()
    return _HEADER.pack(len(body)) + body


def _result(reply: dict, class_name: str) -> Any:
    """A reply -> the output, or the matching error (kept apart so the panel can tell them)."""
    if reply.get("ok"):
        return reply["output"]
    kind, error = reply.get("kind", "model"), reply.get("error", "")
    if kind == "output":
        exc: PredictError | JsonConversionError = JsonConversionError(
            f"{class_name}.predict returned a value JSON cannot carry: {error}")
        exc.path, exc.type_name = reply.get("path"), reply.get("type_name")
    elif kind == "input":
        exc = JsonConversionError(f"the input does not fit {class_name}.predict's annotation: "
                                  f"{error}")
        exc.path, exc.type_name = None, None
    elif kind == "load":
        exc = PredictError(f"{class_name} could not be built from its package: {error}. Fix "
                           "__init__ or the artifacts; the traceback shows where")
    else:
        exc = PredictError(f"{class_name}.predict raised {error}")
    exc.kind, exc.model_traceback = kind, reply.get("traceback", "")
    return _raise(exc)


def _raise(exc: BaseException) -> Any:
    raise exc


class WorkerClient:
    """Predict through a model package running in its own worker process (the default mode).

    The worker starts on the first call (or `start()`); a crash raises WorkerCrashedError and
    the next call starts a new worker; a call past `timeout` seconds kills the worker's whole
    process group and raises WorkerTimeoutError. `load_seconds` is the last start-up time,
    `last_seconds` the last call's round trip, `last_model_seconds` the time inside `predict`.
    """

    isolated = True

    def __init__(self, package_dir, artifacts: dict | None = None, timeout: float = 30.0, *,
                 load_timeout: float | None = None, python: str | None = None):
        import threading

        from .package import package_digest, read_manifest

        self.package_dir = Path(package_dir).resolve()
        manifest = read_manifest(self.package_dir)
        self.artifacts = {str(k): str(v) for k, v in (artifacts or {}).items()}
        self.timeout = float(timeout)
        self.load_timeout = float(load_timeout) if load_timeout else max(self.timeout, 60.0)
        self.python = python or sys.executable
        self.class_name = manifest["class_name"]
        self.info: dict = {"class_name": self.class_name, "digest": package_digest(manifest),
                           "package": str(self.package_dir)}
        self.load_seconds: float | None = None
        self.last_seconds: float | None = None
        self.last_model_seconds: float | None = None
        self.starts = 0
        self._process: _Process | None = None
        self._lock = threading.RLock()

    @property
    def running(self) -> bool:
        """Whether a worker process is alive right now."""
        return self._process is not None and self._process.popen.poll() is None

    @property
    def pid(self) -> int | None:
        """The worker process id (None before the first start or after close)."""
        return self._process.popen.pid if self._process is not None else None

    def start(self) -> None:
        """Start the worker now (otherwise the first `predict` does), and wait until it is built."""
        with self._lock:
            if self.running:
                return
            self._stop_process()
            started = time.perf_counter()
            self._process = _Process(self.python, self.package_dir, self.artifacts)
            self.starts += 1
            _LIVE.add(self)
            hello = self._exchange(None, self.load_timeout, "while loading the model")
            if not hello.get("ok"):
                self._stop_process()
                _result(hello, self.class_name)
            self.info.update({k: v for k, v in hello.items() if k not in ("ok", "load_seconds")})
            self.load_seconds = time.perf_counter() - started

    def predict(self, data: Any) -> Any:
        """`data` (JSON-compatible) -> the model's output as JSON-compatible values."""
        payload = _encode_request(data)
        with self._lock:
            self.start()
            started = time.perf_counter()
            reply = self._exchange(payload, self.timeout, "during predict")
            self.last_seconds = time.perf_counter() - started
            self.last_model_seconds = reply.get("seconds")
        return _result(reply, self.class_name)

    def _exchange(self, payload: bytes | None, timeout: float, when: str) -> dict:
        process = self._process
        deadline = time.monotonic() + timeout
        try:
            if payload is not None:
                process.send(payload, deadline)
            return process.receive(deadline)
        except _Timeout:
            self._stop_process()
            raise self._timeout_error(timeout, when) from None
        except _Gone:
            raise self._crash_error(when) from None
        except BaseException:
            # e.g. KeyboardInterrupt from "interrupt kernel": a reply may still be on its way,
            # and reading it as the next call's answer would be wrong; start afresh next time
            self._stop_process()
            raise

    def _timeout_error(self, timeout: float, when: str) -> WorkerTimeoutError:
        exc = WorkerTimeoutError(
            f"{self.class_name} did not answer within {timeout:g} s {when}; its worker process was "
            "killed and the next call starts a new one. If the model is just slow, raise the "
            "timeout (WorkerClient(..., timeout=...) or PredictPanel(..., timeout=...))")
        exc.kind, exc.model_traceback = "timeout", ""
        return exc

    def _crash_error(self, when: str) -> WorkerCrashedError:
        process, self._process = self._process, None
        how = process.exit_description()
        stderr = process.stderr_text()
        process.stop()
        fatal = stderr.find("Fatal Python error")
        trace = stderr[fatal:] if fatal >= 0 else "\n".join(stderr.splitlines()[-30:])
        # faulthandler lists our own frames under the model's: keep the model's
        ours = str(Path(__file__).resolve())
        trace = "\n".join(line for line in trace.splitlines()
                          if ours not in line and 'File "<string>"' not in line)
        exc = WorkerCrashedError(f"the worker process running {self.class_name} crashed {when} "
                                 f"({how}); the next call starts a new one. The model's last "
                                 f"words:\n{trace.strip() or '(nothing on stderr)'}")
        exc.kind, exc.model_traceback, exc.exit = "crash", trace.strip(), how
        return exc

    def stderr_text(self) -> str:
        """What the running worker (model included) wrote to stdout/stderr lately (last 64 KiB)."""
        return b"".join(self._process.stderr).decode(errors="replace") if self._process else ""

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.stop()

    def close(self) -> None:
        """Stop the worker process (and anything it started). The client can be started again."""
        with self._lock:
            self._stop_process()

    def __enter__(self) -> WorkerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None:
            try:
                process.stop()
            except Exception:  # noqa: BLE001 - interpreter shutdown: best effort only
                pass


def _stop_all_workers() -> None:
    # A kernel that exits normally takes its workers with it (a hung one would not see EOF).
    for client in list(_LIVE):
        client.close()


_LIVE: weakref.WeakSet[WorkerClient] = weakref.WeakSet()
atexit.register(_stop_all_workers)


class InProcessPredictor:
    """The same interface as WorkerClient, running the model in this process (faster, unsafe).

    `source` is a package directory or a class. Requests and replies still go through JSON, so
    the model sees what a deployment would send it; a crash or hang takes the kernel with it.
    """

    isolated = False

    def __init__(self, source, artifacts: dict | None = None, timeout: float | None = None):
        self.source = source
        self.artifacts = {str(k): str(v) for k, v in (artifacts or {}).items()}
        self.timeout = timeout  # not enforced: nothing can stop a call in this process
        self.class_name = source.__name__ if isinstance(source, type) else ""
        self.info: dict = {"class_name": self.class_name}
        self.load_seconds: float | None = None
        self.last_seconds: float | None = None
        self.last_model_seconds: float | None = None
        self._model = None
        self._roots: list[Path] = []

    def start(self) -> None:
        """Rebuild (for a package) and construct the model."""
        if self._model is not None:
            return
        started = time.perf_counter()
        cls = self.source
        if not isinstance(cls, type):
            from .rebuild import load_package

            cls = load_package(self.source)
            meta = cls.__verta_package__
            self.info.update(digest=meta["digest"], package=meta["path"], loaded_from=meta["loaded_from"])
            self._roots = [Path(meta["path"])]
        self.class_name = self.info["class_name"] = cls.__name__
        try:
            self._model = cls(artifacts=dict(self.artifacts))
        except Exception as exc:
            _result({"ok": False, "kind": "load", "error": _one_line(exc),
                     "traceback": model_traceback(exc, self._roots)}, self.class_name)
        self.load_seconds = time.perf_counter() - started

    def predict(self, data: Any) -> Any:
        """`data` (JSON-compatible) -> the model's output as JSON-compatible values."""
        self.start()
        started = time.perf_counter()
        request = json.loads(_encode_request(data)[_HEADER.size:])
        reply = answer(self._model, request, self._roots)
        if "output_json" in reply:
            reply["output"] = json.loads(reply.pop("output_json"))
        self.last_seconds = time.perf_counter() - started
        self.last_model_seconds = reply.get("seconds")
        return _result(reply, self.class_name)

    def close(self) -> None:
        """Drop the model instance."""
        self._model = None


if __name__ == "__main__":
    sys.exit(main())
