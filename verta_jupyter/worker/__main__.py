"""Run a model package in its own process and answer predict requests with JSON.

`python -m verta_jupyter.worker PACKAGE_DIR [--artifacts JSON]` rebuilds the class from the
package (`load_package`: source, digests verified), builds `cls(artifacts=...)` and answers
requests `{"data": ...}` with `{"ok": true, "output": ...}` — exactly what a deployment does, so
a crash, a hang or a dependency on notebook state shows up here and never in the kernel.

Frames are length-prefixed JSON on two dedicated pipes (`--fds R,W`, used by `WorkerClient`);
run by hand it reads and writes one JSON document per line on stdin/stdout. Either way fd 1 is
pointed at stderr first, so whatever the model prints can never corrupt a reply, and
faulthandler is on, so a segfault or abort still leaves the model's Python stack on stderr.

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

from ..errors import ErrorKind
from .protocol import HEADER, answer, encode_reply, model_traceback, one_line

__all__ = ["main"]


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
        model, info = _build(Path(args.package), json.loads(args.artifacts), args.use_pickle)
    except BaseException as exc:  # noqa: BLE001 - report any failure to build, then exit
        channel.send({"ok": False, "kind": ErrorKind.LOAD, "error": one_line(exc),
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
    parser.add_argument("--use-pickle", action="store_true",
                        help="take the class.pkl fast path when Python and cloudpickle match")
    return parser.parse_args(argv)


def _build(package: Path, artifacts: dict, use_pickle: bool) -> tuple[Any, dict]:
    from ..package.load import load_package

    cls = load_package(package, use_pickle=use_pickle)
    meta = cls.__verta_package__
    fingerprint = _fingerprint(cls) if meta["loaded_from"] == "model.py" else {}  # before __init__ can change class state
    model = cls(artifacts=artifacts)
    return model, {"class_name": cls.__name__, "digest": meta["digest"], "package": meta["path"],
                   "loaded_from": meta["loaded_from"], "notes": meta["notes"],
                   "python": sys.version.split()[0], "pid": os.getpid(), "fingerprint": fingerprint}


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
        return None if body is None else json.loads(body)


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


if __name__ == "__main__":
    sys.exit(main())
