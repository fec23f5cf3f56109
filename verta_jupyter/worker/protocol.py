"""What the worker process and the kernel side share: frames, one request's answer, tracebacks.

A frame is a 4-byte big-endian length, then UTF-8 JSON: no delimiter scanning, any payload size.
`answer` is one predict request end to end (convert input, predict, convert output), used by
the worker process and by `InProcessPredictor` alike, so both modes fail in the same ways.
"""
from __future__ import annotations

import json
import struct
import time
import traceback
from pathlib import Path
from typing import Any

from ..errors import ErrorKind, JsonConversionError
from ..jsonify.input import convert_input
from ..jsonify.output import dumps, dumps_plain, to_json_compatible

HEADER = struct.Struct(">I")


def answer(model: Any, request: dict, roots: list[Path]) -> dict:
    """One predict request -> reply: convert input, predict, convert output, each kept apart."""
    try:
        data = convert_input(model.predict, request["data"])
    except (JsonConversionError, KeyError, TypeError) as exc:
        return {"ok": False, "kind": ErrorKind.INPUT, "error": one_line(exc)}
    started = time.perf_counter()
    try:
        output = model.predict(data)
    except KeyboardInterrupt:  # the user interrupted an in-process call: not the model's fault
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a model is a model error too
        return {"ok": False, "kind": ErrorKind.MODEL, "error": one_line(exc),
                "traceback": model_traceback(exc, roots)}
    seconds = time.perf_counter() - started
    try:
        return {"ok": True, "output_json": _encode_output(output), "seconds": seconds}
    except JsonConversionError as exc:
        return {"ok": False, "kind": ErrorKind.OUTPUT, "error": str(exc), "path": exc.path,
                "type_name": exc.type_name, "seconds": seconds}


def _encode_output(output: Any) -> str:
    """Strict JSON text of `output`: encoded directly when it is plain JSON already (orjson when
    installed, else the C encoder; they refuse unknown types), else the known-types conversion."""
    try:
        return dumps_plain(output)
    except (TypeError, ValueError, RecursionError):
        return dumps(output)


def encode_reply(message: dict) -> bytes:
    """The reply as JSON bytes; an already-encoded output is spliced in, not re-encoded."""
    if "output_json" not in message:
        return json.dumps(message, allow_nan=False).encode()
    rest = {k: v for k, v in message.items() if k != "output_json"}
    return (json.dumps(rest, allow_nan=False)[:-1] + ', "output": ' + message["output_json"]
            + "}").encode()


def encode_request(data: Any) -> bytes:
    """A request frame (header included) for JSON-compatible `data`."""
    try:  # the C encoder first: plain JSON input costs no Python walk
        body = json.dumps({"data": data}, allow_nan=False).encode()
    except (TypeError, ValueError):
        body = json.dumps({"data": to_json_compatible(data, root="data")}, allow_nan=False).encode()
    return HEADER.pack(len(body)) + body


def one_line(exc: BaseException) -> str:
    """`Type: message` (or just the type when the message is empty)."""
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
