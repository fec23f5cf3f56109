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
from ..jsonify.output import (dumps_plain, oversized_int_message, oversized_int_path,
                              to_json_compatible, too_deep_message)

HEADER = struct.Struct(">I")


MiB = 1 << 20
# A frame's length must fit the 4-byte header; the configured limit stays well below it.
FRAME_MAX = (1 << 32) - 1


class Undecodable(ValueError):
    """A frame's JSON could not be read back (nested too deeply, an int past the digit limit)."""


def answer(model: Any, request: dict, roots: list[Path], message_limit: int | None = None) -> dict:
    """One predict request -> reply: convert input, predict, convert output, each kept apart.

    `message_limit` caps the output's JSON text (bytes); past it the reply is an OUTPUT error."""
    try:
        data = convert_input(model.predict, request["data"])
    except (JsonConversionError, KeyError, TypeError, ValueError) as exc:
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
        text = to_json_text(output, root="result", kind=ErrorKind.OUTPUT, limit=message_limit)
    except JsonConversionError as exc:
        return {"ok": False, "kind": ErrorKind.OUTPUT, "error": str(exc), "path": exc.path,
                "type_name": exc.type_name, "seconds": seconds}
    return {"ok": True, "output_json": text, "seconds": seconds}


def to_json_text(value: Any, *, root: str, kind: ErrorKind, limit: int | None = None) -> str:
    """Strict JSON text of `value`, or JsonConversionError(kind) naming where under `root`:
    no JSON form, nested too deeply, an int too long for text, or more than `limit` bytes.

    The plain encoder goes first (orjson when installed, else the C encoder: plain JSON costs
    no Python walk); the known-types conversion takes over when it refuses (numpy, pandas, ...)."""
    try:
        text = dumps_plain(value)
    except (TypeError, ValueError, RecursionError):
        text = _converted_text(value, root, kind)
    if limit is not None and _size(text) > limit:
        side = "input" if kind is ErrorKind.INPUT else "output"
        raise JsonConversionError(
            f"{root}: the {side} is {_mib(len(text))} of JSON, more than the worker's message "
            f"limit of {_mib(limit)}. Send or return less, or raise the limit with "
            "WorkerClient(..., message_limit=...) or VERTA_JUPYTER_WORKER_MESSAGE_LIMIT",
            path=root, kind=kind)
    return text


def _converted_text(value: Any, root: str, kind: ErrorKind) -> str:
    try:
        converted = to_json_compatible(value, root=root)
    except JsonConversionError as exc:
        raise JsonConversionError(str(exc), exc.problems, path=exc.path, type_name=exc.type_name,
                                  kind=kind) from None
    try:
        return dumps_plain(converted)
    except RecursionError:
        raise JsonConversionError(too_deep_message(root), path=root, kind=kind) from None
    except ValueError:  # an int past Python's int->str digit limit
        where = oversized_int_path(converted, root=root) or root
        raise JsonConversionError(oversized_int_message(where), path=where, type_name="int",
                                  kind=kind) from None


def _size(text: str) -> int:
    """Bytes of `text` as UTF-8 (orjson leaves non-ASCII characters unescaped)."""
    return len(text) if text.isascii() else len(text.encode())


def decode(body: bytes | str) -> Any:
    """JSON text -> value; Undecodable (one line, says why) instead of RecursionError or the
    int digit limit's ValueError, so a hostile frame is an error, never a dead reader."""
    try:
        return json.loads(body)
    except RecursionError:
        raise Undecodable("nested too deeply to read (past Python's recursion limit)") from None
    except ValueError as exc:
        raise Undecodable(str(exc).split("; use")[0]) from None


def encode_reply(message: dict) -> bytes:
    """The reply as JSON bytes; an already-encoded output is spliced in, not re-encoded."""
    if "output_json" not in message:
        return json.dumps(message, allow_nan=False).encode()
    rest = {k: v for k, v in message.items() if k != "output_json"}
    return (json.dumps(rest, allow_nan=False)[:-1] + ', "output": ' + message["output_json"]
            + "}").encode()


def encode_request(data: Any, limit: int | None = None) -> bytes:
    """A request frame (header included) for JSON-compatible `data`; JsonConversionError(INPUT)
    when it has no JSON text or is bigger than `limit` bytes."""
    body = ('{"data": ' + to_json_text(data, root="data", kind=ErrorKind.INPUT, limit=limit)
            + "}").encode()
    return HEADER.pack(len(body)) + body


def _mib(size: int) -> str:
    return f"{size / MiB:.1f} MiB" if size < 10 * MiB else f"{size // MiB} MiB"


def one_line(exc: BaseException) -> str:
    """`Type: message` (or just the type when the message is empty); a message of megabytes
    is cut, so an error reply always fits a frame."""
    try:
        text = _cut(str(exc))
    except Exception:  # noqa: BLE001 - a model's __str__ may raise; the type still says a lot
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cut(text: str, keep: int = 10_000) -> str:
    if len(text) <= keep:
        return text
    return f"{text[:keep]}... ({len(text) - keep:,} more characters)"


def model_error(exc: BaseException, roots: list[Path]) -> BaseException:
    """`exc`, or the exception it was raised from when that one has the model's frames (model.py
    failing as it runs is reported by the loader `from` the model's own error)."""
    resolved = [str(Path(r).resolve()) for r in roots]
    cause = exc.__cause__
    while cause is not None:
        if any(f.filename.startswith(r) for f in traceback.extract_tb(cause.__traceback__)
               for r in resolved):
            return cause
        cause = cause.__cause__
    return exc


def model_traceback(exc: BaseException, roots: list[Path]) -> str:
    """The traceback trimmed to the model's own frames (files under `roots`).

    Our frames (worker, jsonify, rebuild) are dropped; the frame that raised is kept even when
    it is inside a library, since that is where the message comes from.
    """
    exc = model_error(exc, roots)
    resolved = [str(r.resolve()) for r in roots]
    te = traceback.TracebackException.from_exception(exc, capture_locals=False)
    frames = list(te.stack)
    ours = str(Path(__file__).resolve().parent)
    kept = [f for f in frames if any(f.filename.startswith(r) for r in resolved)]
    if not kept:
        kept = [f for f in frames if not f.filename.startswith(ours)]
    if frames and frames[-1] not in kept:
        kept.append(frames[-1])
    stack = traceback.StackSummary.from_list(kept)
    return "Traceback (most recent call last):\n" + "".join(stack.format()) + \
        _cut("".join(te.format_exception_only()))
