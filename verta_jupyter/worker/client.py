"""The kernel side of the worker: predict through a model package from the notebook.

`WorkerClient` runs the package in its own process (`worker_spawn`) and turns replies into
outputs or errors the panel can tell apart; `InProcessPredictor` offers the same interface in
this process.
"""
from __future__ import annotations

import atexit
import sys
import time
import weakref
from pathlib import Path
from typing import Any

from ..errors import (ErrorKind, JsonConversionError, PackageError, PredictError,
                      WorkerCrashedError, WorkerTimeoutError)
from .limits import ENV_MEMORY, MiB, memory_limit as _memory_limit, message_limit as _message_limit
from .protocol import HEADER, Undecodable, answer, decode, encode_request, model_traceback, one_line
from . import spares
from .process import Gone, Timeout, WorkerProcess, model_stack

__all__ = ["WorkerClient", "InProcessPredictor"]


def _result(reply: dict, class_name: str) -> Any:
    """A reply -> the output, or the matching error (kept apart so the panel can tell them)."""
    if reply.get("ok"):
        return reply["output"]
    kind, error = ErrorKind(reply.get("kind", ErrorKind.MODEL)), reply.get("error", "")
    trace = reply.get("traceback", "")
    if kind is ErrorKind.OUTPUT:
        raise JsonConversionError(f"{class_name}.predict returned a value JSON cannot carry: {error}",
                                  path=reply.get("path"), type_name=reply.get("type_name"),
                                  kind=kind, model_traceback=trace)
    if kind is ErrorKind.INPUT:
        raise JsonConversionError(f"the input does not fit {class_name}.predict's annotation: "
                                  f"{error}", kind=kind, model_traceback=trace)
    if kind is ErrorKind.LOAD and reply.get("refused"):  # the package itself, not the model
        raise PackageError(f"{class_name}: {error}")
    if kind is ErrorKind.LOAD:
        raise PredictError(f"{class_name} could not be built from its package: {error}. Fix "
                           "__init__ or the artifacts; the traceback shows where", kind=kind,
                           reason=error, model_traceback=trace)
    raise PredictError(f"{class_name}.predict raised {error}", kind=kind, reason=error,
                       model_traceback=trace)


class WorkerClient:
    """Predict through a model package running in its own worker process (the default mode).

    The worker starts on the first call (or `start()`); a crash raises WorkerCrashedError and
    the next call starts a new worker; a call past `timeout` seconds kills the worker's whole
    process group and raises WorkerTimeoutError. `load_seconds` is the last start-up time,
    `last_seconds` the last call's round trip, `last_model_seconds` the time inside `predict`.

    `memory_limit` (bytes, or "4GiB", "50%", "off"; default VERTA_JUPYTER_WORKER_MEMORY, else
    75% of physical memory) stops a model that allocates past it, with WorkerCrashedError;
    `message_limit` (default VERTA_JUPYTER_WORKER_MESSAGE_LIMIT, else 256 MiB) caps one
    request's or one output's JSON. See `worker.limits` for how each is enforced.
    """

    isolated = True
    where = "isolated worker"

    def __init__(self, package_dir, artifacts: dict | None = None, timeout: float = 30.0, *,
                 load_timeout: float | None = None, python: str | None = None,
                 use_pickle: bool = False, memory_limit: int | str | None = None,
                 message_limit: int | str | None = None):
        import threading

        from ..package.format import package_digest, read_manifest

        self.package_dir = Path(package_dir).resolve()
        manifest = read_manifest(self.package_dir)
        self.artifacts = {str(k): str(v) for k, v in (artifacts or {}).items()}
        self.timeout = float(timeout)
        self.load_timeout = float(load_timeout) if load_timeout else max(self.timeout, 60.0)
        self.python = python or sys.executable
        self.use_pickle = use_pickle
        self.memory_limit = _memory_limit(memory_limit)
        self.message_limit = _message_limit(message_limit)
        self.class_name = manifest["class_name"]
        self.digest = package_digest(manifest)  # the package checked here is the one built there
        self.info: dict = {"class_name": self.class_name, "digest": self.digest,
                           "package": str(self.package_dir)}
        self.load_seconds: float | None = None
        self.last_seconds: float | None = None
        self.last_model_seconds: float | None = None
        self.starts = 0
        self._process: WorkerProcess | None = None
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
            self._process = spares.take(self.python, self.memory_limit, self.message_limit)
            self.starts += 1
            _LIVE.add(self)
            job = (self.package_dir, self.artifacts, self.use_pickle, self.digest)
            hello = self._exchange(None, self.load_timeout, "while loading the model", job)
            if not hello.get("ok"):
                self._check_memory(hello, "while loading the model")
                self._stop_process()
                _result(hello, self.class_name)
            self.info.update({k: v for k, v in hello.items() if k not in ("ok", "load_seconds")})
            self.load_seconds = time.perf_counter() - started

    def predict(self, data: Any) -> Any:
        """`data` (JSON-compatible) -> the model's output as JSON-compatible values."""
        payload = encode_request(data, self.message_limit)
        with self._lock:
            self.start()
            started = time.perf_counter()
            reply = self._exchange(payload, self.timeout, "during predict")
            self.last_seconds = time.perf_counter() - started
            self.last_model_seconds = reply.get("seconds")
            if not reply.get("ok"):
                self._check_memory(reply, "during predict")
        return _result(reply, self.class_name)

    def _check_memory(self, reply: dict, when: str) -> None:
        """A MemoryError under an enforced limit is the limit's doing: say so, start afresh."""
        enforced = self._process is not None and self._process.memory_enforcement
        if enforced and reply.get("error", "").startswith("MemoryError"):
            self._stop_process()
            raise self._memory_error(when, reply.get("traceback", ""), reply["error"])

    def _memory_error(self, when: str, trace: str, reason: str = "") -> WorkerCrashedError:
        mib = self.memory_limit // MiB
        said = f" ({reason})" if reason not in ("", "MemoryError") else ""
        return WorkerCrashedError(
            f"{self.class_name} reached the worker's memory limit of {mib} MiB {when}{said}; the "
            "worker was stopped and the next call starts a new one. If the model needs more, raise "
            f"the limit: WorkerClient(..., memory_limit='{max(2 * mib // 1024, 1)}GiB') or the "
            f"environment variable {ENV_MEMORY} (a size, a share such as '90%', or 'off')",
            exit=f"memory limit of {mib} MiB reached", model_traceback=trace.strip())

    def _exchange(self, payload: bytes | None, timeout: float, when: str,
                  job: tuple[Path, dict, bool, str] | None = None) -> dict:
        process = self._process
        deadline = time.monotonic() + timeout
        try:
            if job is not None:
                process.assign(*job, deadline)
            if payload is not None:
                process.send(payload, deadline)
            return process.receive(deadline)
        except Timeout:
            self._stop_process()
            raise self._timeout_error(timeout, when) from None
        except Gone as exc:
            raise self._crash_error(when, str(exc)) from None
        except Undecodable as exc:  # the frame was read whole: the worker is still in step
            raise JsonConversionError(
                f"{self.class_name}.predict returned a value whose JSON cannot be read here: "
                f"{exc}. Return a flatter structure, and very long integers as strings",
                path="result", kind=ErrorKind.OUTPUT) from None
        except BaseException:
            # e.g. KeyboardInterrupt from "interrupt kernel": a reply may still be on its way,
            # and reading it as the next call's answer would be wrong; start afresh next time
            self._stop_process()
            raise

    def _timeout_error(self, timeout: float, when: str) -> WorkerTimeoutError:
        return WorkerTimeoutError(
            f"{self.class_name} did not answer within {timeout:g} s {when}; its worker process was "
            "killed and the next call starts a new one. If the model is just slow, raise the "
            "timeout (WorkerClient(..., timeout=...) or PredictPanel(..., timeout=...))",
            seconds=timeout)

    def _crash_error(self, when: str, broke: str = "") -> WorkerCrashedError:
        process, self._process = self._process, None
        if broke:  # alive but off the protocol (an oversized frame): nothing more to read
            process.stop()
        how = broke or process.exit_description()
        stderr = process.stderr_text()
        process.stop()
        trace = model_stack(stderr)
        if process.memory_exceeded or (process.memory_enforcement == "rlimit"
                                       and _out_of_memory(stderr)):
            return self._memory_error(when, trace)
        return WorkerCrashedError(f"the worker process running {self.class_name} crashed {when} "
                                  f"({how}); the next call starts a new one. The model's last "
                                  f"words:\n{trace.strip() or '(nothing on stderr)'}",
                                  exit=how, model_traceback=trace.strip())

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


def _out_of_memory(stderr: str) -> bool:
    # native code that cannot allocate under the rlimit aborts rather than raising MemoryError
    tail = stderr[-4096:]
    return any(s in tail for s in ("MemoryError", "std::bad_alloc", "Cannot allocate memory",
                                   "out of memory"))


def prime_spare(python: str | None = None) -> None:
    """Start, in the background, the spare worker the next `WorkerClient` with default limits
    will take (the extension does this on load, so the first proof is already fast)."""
    spares.prime(python or sys.executable, _memory_limit(None), _message_limit(None),
                 background=True)


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
    where = "in this kernel"

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
            from ..package.load import load_package

            cls = load_package(self.source)
            meta = cls.__verta_package__
            self.info.update(digest=meta["digest"], package=meta["path"], loaded_from=meta["loaded_from"])
            self._roots = [Path(meta["path"])]
        self.class_name = self.info["class_name"] = cls.__name__
        try:
            self._model = cls(artifacts=dict(self.artifacts))
        except Exception as exc:
            _result({"ok": False, "kind": ErrorKind.LOAD, "error": one_line(exc),
                     "traceback": model_traceback(exc, self._roots)}, self.class_name)
        self.load_seconds = time.perf_counter() - started

    def predict(self, data: Any) -> Any:
        """`data` (JSON-compatible) -> the model's output as JSON-compatible values."""
        self.start()
        started = time.perf_counter()
        try:
            request = decode(encode_request(data)[HEADER.size:])
        except Undecodable as exc:
            raise JsonConversionError(f"data cannot be read back from its JSON: {exc}",
                                      path="data", kind=ErrorKind.INPUT) from None
        reply = answer(self._model, request, self._roots)
        if "output_json" in reply:
            try:
                reply["output"] = decode(reply.pop("output_json"))
            except Undecodable as exc:
                raise JsonConversionError(f"{self.class_name}.predict returned a value whose "
                                          f"JSON cannot be read back: {exc}", path="result",
                                          kind=ErrorKind.OUTPUT) from None
        self.last_seconds = time.perf_counter() - started
        self.last_model_seconds = reply.get("seconds")
        return _result(reply, self.class_name)

    def close(self) -> None:
        """Drop the model instance."""
        self._model = None
