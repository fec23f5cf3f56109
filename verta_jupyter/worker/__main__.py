"""Run a model package in its own process and answer predict requests with JSON.

`python -m verta_jupyter.worker PACKAGE_DIR [--artifacts JSON]` rebuilds the class from the
package (`load_package`: source, digests verified), builds `cls(artifacts=...)` and answers
requests `{"data": ...}` with `{"ok": true, "output": ...}` — exactly what a deployment does, so
a crash, a hang or a dependency on notebook state shows up here and never in the kernel.

With `--framed` (how `WorkerClient` runs it) messages are length-prefixed JSON frames on
stdin/stdout, which the worker first moves to private descriptors: that works the same on
Linux, macOS and Windows. Run by hand it reads and writes one JSON document per line. Either
way fd 1 is pointed at stderr first, so whatever the model prints can never corrupt a reply,
and faulthandler is on, so a segfault or abort still leaves the model's Python stack on stderr.
Hostile requests (nested past the recursion limit, huge integers) are answered with an input
error; the worker keeps serving. `--rlimit` caps memory (set by the kernel on Linux).

This module is the process side; the kernel side is `worker.client`, and every start goes
through `worker.process` (one command line, one environment for every fresh process).
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ErrorKind, PackageError
from .protocol import (HEADER, Undecodable, answer, decode, encode_reply, model_error,
                       model_traceback, one_line)

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker process; returns the exit code."""
    args = _parse(argv)
    faulthandler.enable()
    if args.rlimit:
        _limit_memory(args.rlimit)
    channel: _Channel = (_FramedChannel(*_take_stdio()) if args.framed
                         else _LineChannel(0, os.dup(1)))
    os.dup2(2, 1)  # the model's prints go to stderr, never into a reply
    job = _job(args, channel)
    if job is None:  # a spare that was never needed: the kernel closed our stdin
        return 0
    package, artifacts, use_pickle, digest = job
    started = time.perf_counter()
    try:
        model, info = _build(package, artifacts, use_pickle, digest)
    except BaseException as exc:  # noqa: BLE001 - report any failure to build, then exit
        channel.send({"ok": False, "kind": ErrorKind.LOAD, "error": one_line(exc),
                      "traceback": model_traceback(exc, [package]),
                      "refused": _package_refused(exc, package)})
        return 1
    channel.send({"ok": True, "load_seconds": time.perf_counter() - started, **info})
    roots = [Path(info["package"])]
    while True:
        try:
            request = channel.receive()
        except Undecodable as exc:  # hostile JSON is an input error; the worker stays up
            channel.send({"ok": False, "kind": ErrorKind.INPUT,
                          "error": f"the request could not be read: {exc}"})
            continue
        if request is None:
            return 0
        try:
            reply = answer(model, request, roots, args.message_limit)
        except MemoryError:  # converting the input or the output, past the memory limit
            reply = {"ok": False, "kind": ErrorKind.MODEL, "error": "MemoryError"}
        channel.send(reply)


def _job(args: argparse.Namespace, channel: _Channel) -> tuple[Path, dict, bool, str] | None:
    """Which package to serve: from the command line, or, for a worker started ahead of need
    (a spare: `--framed` without a package), from the kernel's first frame, with the digest of
    the package the kernel checked ("" from the command line: the manifest's own)."""
    if args.package is not None:
        return Path(args.package), json.loads(args.artifacts), args.use_pickle, ""
    _import_ahead()
    job = channel.receive()
    if job is None:
        return None
    return (Path(job["package"]), dict(job.get("artifacts") or {}), bool(job.get("use_pickle")),
            str(job.get("digest") or ""))


def _import_ahead() -> None:
    """A spare imports, while it waits, the parts of verta_jupyter its first job needs (about
    50 ms: the loader, and the fingerprint, which pulls in capture's importlib.metadata). Only
    our own code is imported, never a model's, so the proof stays a process that never saw the
    notebook; model.py is still imported fresh from the verified package."""
    from ..capture import fingerprint  # noqa: F401
    from ..package import load  # noqa: F401


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m verta_jupyter.worker",
                                     description="Serve predict requests for a model package.")
    parser.add_argument("package", nargs="?", default=None,
                        help="model package directory (CapturedModel.save / download_model); "
                             "with --framed it may instead come in the first frame")
    parser.add_argument("--artifacts", default="{}", help='JSON object {"key": "/local/path"}')
    parser.add_argument("--framed", action="store_true",
                        help="length-prefixed frames on stdin/stdout (as WorkerClient runs it)")
    parser.add_argument("--use-pickle", action="store_true",
                        help="take the class.pkl fast path when Python and cloudpickle match")
    parser.add_argument("--rlimit", default="",
                        help="KIND:BYTES, cap memory with setrlimit (KIND: data or as)")
    parser.add_argument("--message-limit", type=int, default=None,
                        help="largest output, in bytes of JSON")
    args = parser.parse_args(argv)
    if args.package is None and not args.framed:
        parser.error("the package directory is required (only a --framed worker gets it later)")
    return args


def _take_stdio() -> tuple[int, int]:
    """Keep stdin/stdout for frames on private fds; the model gets an empty stdin, and fd 1
    (pointed at stderr by the caller) for its prints. Private fds are not inherited, so a
    process the model starts cannot hold the kernel's pipes open."""
    read_fd, write_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if hasattr(os, "O_BINARY"):  # Windows: frames are bytes, no newline translation
        import msvcrt

        msvcrt.setmode(read_fd, os.O_BINARY)
        msvcrt.setmode(write_fd, os.O_BINARY)
    return read_fd, write_fd


def _limit_memory(spec: str) -> None:
    """Cap this process (and what it starts) with setrlimit; the kernel chose the kind."""
    import resource

    kind, size = spec.split(":")
    which = resource.RLIMIT_DATA if kind == "data" else resource.RLIMIT_AS
    soft, hard = resource.getrlimit(which)
    # never loosen a limit the user set for the kernel (ulimit -d / -v)
    limit = min(x for x in (int(size), soft, hard) if x != resource.RLIM_INFINITY)
    resource.setrlimit(which, (limit, hard))


def _build(package: Path, artifacts: dict, use_pickle: bool, digest: str) -> tuple[Any, dict]:
    from ..package.load import load_package

    cls = load_package(package, use_pickle=use_pickle, expected_digest=digest)
    meta = cls.__verta_package__
    fingerprint = _fingerprint(cls) if meta["loaded_from"] == "model.py" else {}  # before __init__ can change class state
    model = cls(artifacts=artifacts)
    return model, {"class_name": cls.__name__, "digest": meta["digest"], "package": meta["path"],
                   "loaded_from": meta["loaded_from"], "notes": meta["notes"],
                   "python": sys.version.split()[0], "pid": os.getpid(), "fingerprint": fingerprint}


def _package_refused(exc: BaseException, package: Path) -> bool:
    """The package itself was refused (damaged, swapped, not a package), as opposed to the
    model's own code failing while model.py ran: that keeps its traceback as a load error."""
    return isinstance(exc, PackageError) and model_error(exc, [package]) is exc


def _fingerprint(cls: type) -> dict:
    """Validation's fidelity proof compares this with the notebook's (capture.fingerprint)."""
    from ..capture.fingerprint import fingerprint_module

    module = sys.modules.get(cls.__module__)
    try:
        return fingerprint_module(module) if module is not None else {}
    except Exception:  # noqa: BLE001 - the proof is best effort; the model still serves
        return {}


class _Channel:
    def send(self, message: dict) -> None:
        raise NotImplementedError

    def receive(self) -> dict | None:
        raise NotImplementedError


class _FramedChannel(_Channel):
    """Length-prefixed frames (worker_protocol.HEADER) on two pipes, for WorkerClient."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd, self.write_fd = read_fd, write_fd

    def send(self, message: dict) -> None:
        body = encode_reply(message)
        _write_all(self.write_fd, HEADER.pack(len(body)) + body)

    def receive(self) -> dict | None:
        header = _read_exact(self.read_fd, HEADER.size)
        if header is None:
            return None
        body = _read_exact(self.read_fd, HEADER.unpack(header)[0])
        return None if body is None else decode(body)


class _LineChannel(_Channel):
    """One JSON document per line, for people driving the worker from a shell."""

    def __init__(self, read_fd: int, write_fd: int):
        self.reader = os.fdopen(read_fd, "rb")
        self.write_fd = write_fd

    def send(self, message: dict) -> None:
        _write_all(self.write_fd, encode_reply(message) + b"\n")

    def receive(self) -> dict | None:
        while line := self.reader.readline():
            if line.strip():
                request = decode(line)
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


if __name__ == "__main__":
    sys.exit(main())
