"""Known Python types <-> strict JSON (RFC 8259): what a model returns, and what `predict` receives.

`to_json_compatible(obj)` turns a model's output into plain dicts, lists, strings, numbers,
booleans and None, each known type in one documented form (docs/json-types.md); NaN and
infinities become null because bare `NaN` tokens are not JSON and break other clients.
Anything without a form raises `JsonConversionError` naming the type and where it sits in the
output (`result["scores"][3]`). `convert_input` does the reverse for `predict`'s argument when
its parameter is annotated (`pandas.DataFrame`, `numpy.ndarray`, dataclasses, ...); that side
lives in `jsonify_input` and is re-exported here, so both directions import from one place.

numpy and pandas are never imported here: a value of their types can only exist once they are
imported, and an annotation that names them asks for them explicitly. Tables and arrays are
converted column by column with numpy, not cell by cell in Python.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import gc
import json
import math
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from decimal import Decimal
from functools import lru_cache
from pathlib import PurePath
from typing import Any, Callable

from .forms import NoJsonForm, type_name
from ..catalog import problem
from ..errors import JsonConversionError

__all__ = ["to_json_compatible", "dumps", "dumps_plain", "too_deep_message", "oversized_int_path",
           "oversized_int_message"]

try:  # optional speed-up: several times faster than json.dumps on floats
    import orjson as _orjson

    # Types orjson would encode its own way (datetimes, dataclasses, subclasses of str/int/
    # dict/list) go to `default` instead, so the known-types conversion alone decides their form.
    _ORJSON_PLAIN_ONLY = (_orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_DATACLASS
                          | _orjson.OPT_PASSTHROUGH_SUBCLASS)
except ImportError:
    _orjson = None
    _ORJSON_PLAIN_ONLY = 0


def to_json_compatible(obj: Any, *, root: str = "result") -> Any:
    """Return `obj` as plain JSON values (see docs/json-types.md); NaN/Inf become None.

    Raises JsonConversionError naming the value's type and its path under `root`.
    """
    try:
        return _convert(obj)
    except RecursionError:
        # past ~1,000 levels; a clear error here, never a RecursionError through our frames
        raise JsonConversionError(too_deep_message(root), path=root, type_name=None) from None
    except NoJsonForm as exc:
        where = exc.where(root)
        detail = f" ({exc.detail})" if exc.detail else ""
        message = (f"{where}: a value of type {exc.type_name} has no JSON form{detail}. Convert it "
                   "to a dict, list, str, number or a known type (numpy, pandas, datetime, ...) "
                   "before returning it")
        found = problem("VJ403", f"{where} is a {exc.type_name}{detail}", name=exc.type_name,
                        where=where)
        raise JsonConversionError(message, [found], path=where, type_name=exc.type_name) from None


def too_deep_message(root: str) -> str:
    """What to say about a value nested past what Python (and most JSON readers) can walk."""
    return (f"{root} is nested too deeply for JSON here (past Python's recursion limit of "
            f"{sys.getrecursionlimit()} levels). Send or return a flatter structure")


def oversized_int_path(obj: Any, *, root: str = "result") -> str | None:
    """Where in plain JSON values `obj` an int too long for `str()` sits (Python's int->str
    digit limit, sys.get_int_max_str_digits), or None. Walks without recursion."""
    stack = [(obj, root)]
    while stack:
        value, where = stack.pop()
        if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
            try:
                str(value)
            except ValueError:
                return where
        elif isinstance(value, dict):
            stack.extend((v, f"{where}[{json.dumps(str(k))}]") for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))
    return None


def oversized_int_message(where: str) -> str:
    digits = getattr(sys, "get_int_max_str_digits", lambda: 0)()
    return (f"{where} is an integer with more than {digits} digits, past Python's int->str "
            "limit (sys.set_int_max_str_digits), so it has no JSON text here. Send or return it "
            "as a string (str(n)), or as a float if the precision does not matter")


def dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON text for `obj` (never a NaN token); keyword arguments go to `json.dumps`.

    Without keyword arguments orjson encodes when it is installed (`verta-jupyter[fast]`): the
    same values (floats round-trip exactly, NaN/Inf are null, keys as `to_json_compatible` makes
    them), in compact text with UTF-8 characters unescaped.
    """
    with _gc_paused() if _large(obj) else nullcontext():
        value = to_json_compatible(obj)
        return json.dumps(value, allow_nan=False, **kwargs) if kwargs else dumps_plain(value)


def _large(obj: Any) -> bool:
    """10,000 rows or items or more (below that, pausing GC costs more than it saves)."""
    try:
        return len(obj) >= 10_000
    except TypeError:
        return False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a large output is built: 100,000 records are 100,000
    new dicts, and the collections they trigger cost a third of the time (they would find
    nothing: the records hold no cycles). The previous state is restored."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def dumps_plain(value: Any) -> str:
    """Strict JSON text of a value JSON can carry as it is (what `to_json_compatible` returns);
    TypeError/ValueError for anything else (numpy, datetime, ...; NaN raises without orjson
    and is null with it, as the conversion would make it), so callers can try it first."""
    if _orjson is not None:
        try:
            return _orjson.dumps(value, default=_not_plain, option=_ORJSON_PLAIN_ONLY).decode()
        except _orjson.JSONEncodeError as exc:
            if isinstance(exc.__cause__, _NotPlain):
                raise TypeError(str(exc.__cause__)) from None
            # past orjson's limits (integers over 64 bits, nesting past 254, lone surrogates):
            # the standard encoder decides
    return json.dumps(value, allow_nan=False)


class _NotPlain(TypeError):
    pass


def _not_plain(obj: Any) -> Any:
    raise _NotPlain(f"Object of type {type(obj).__name__} is not JSON serializable")


# -- output: one converter per type, resolved once per type and cached ------------------------

def _convert(obj: Any) -> Any:
    t = type(obj)
    if t is str or t is int or t is bool or obj is None:
        return obj
    if t is float:
        return obj if math.isfinite(obj) else None
    fn = _CONVERTERS.get(t)
    if fn is None:
        fn = _CONVERTERS[t] = _resolve(t)
    return fn(obj)


def _unsupported(obj: Any) -> Any:
    raise NoJsonForm(type_name(type(obj)))


def _float(obj: Any) -> Any:
    value = float(obj)
    return value if math.isfinite(value) else None


def _key(key: Any) -> str:
    """JSON object keys are strings; convert the way `json.dumps` does, plus known scalars."""
    if type(key) is str:
        return key
    value = _convert(key)
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    raise NoJsonForm(type_name(type(key)), "as a key")


def _dict(obj: Mapping) -> dict:
    out = {}
    for k, v in obj.items():
        try:
            out[_key(k)] = _convert(v)
        except NoJsonForm as exc:
            exc.segments.append(f"[{json.dumps(str(k))}]")
            raise
    if len(out) != len(obj):
        raise NoJsonForm(type_name(type(obj)), "two keys have the same JSON string form")
    return out


def _list(obj: Any) -> list:
    out = []
    for i, v in enumerate(obj):
        try:
            out.append(_convert(v))
        except NoJsonForm as exc:
            exc.segments.append(f"[{i}]")
            raise
    return out


def _set(obj: Any) -> list:
    # Sorted so that the same set gives the same JSON in every process (hash order varies).
    items = _list(obj)
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))


def _decimal(obj: Decimal) -> str | None:
    return str(obj) if obj.is_finite() else None


def _bytes(obj: Any) -> str:
    return base64.b64encode(bytes(obj)).decode("ascii")


def _dataclass(obj: Any) -> dict:
    return _dict({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})


def _pydantic(obj: Any) -> Any:
    # The model's own JSON form honours its serializers; _convert then maps NaN to null.
    return _convert(obj.model_dump(mode="json"))


def _resolve(t: type) -> Callable[[Any], Any]:
    module = t.__module__ or ""
    if module.startswith("numpy"):
        return _numpy_converter(t)
    if module.startswith("pandas"):
        found = _pandas_converter(t)
        if found is not None:
            return found
    for base, fn in _BY_BASE:
        if issubclass(t, base):
            return fn
    if dataclasses.is_dataclass(t):
        return _dataclass
    if hasattr(t, "model_dump") and hasattr(t, "model_fields"):
        return _pydantic
    return _unsupported


_BY_BASE: list[tuple[type, Callable[[Any], Any]]] = [
    (enum.Enum, lambda obj: _convert(obj.value)),
    (bool, bool),
    (int, int),
    (float, _float),
    (str, str),
    (Mapping, _dict),
    ((list, tuple), _list),
    ((set, frozenset), _set),
    ((bytes, bytearray, memoryview), _bytes),
    ((_dt.datetime, _dt.date, _dt.time), lambda obj: obj.isoformat()),
    (_dt.timedelta, lambda obj: obj.total_seconds()),
    (Decimal, _decimal),
    (uuid.UUID, str),
    (PurePath, str),
]

_CONVERTERS: dict[type, Callable[[Any], Any]] = {type(None): lambda obj: None}


# -- numpy and pandas (their modules are loaded: a value of their type exists) -----------------

def _numpy_converter(t: type) -> Callable[[Any], Any]:
    import numpy as np

    if issubclass(t, np.ndarray):
        return _array
    if issubclass(t, np.datetime64):
        return lambda obj: None if np.isnat(obj) else str(np.datetime_as_string(obj))
    if issubclass(t, np.timedelta64):
        return lambda obj: None if np.isnat(obj) else float(obj / np.timedelta64(1, "s"))
    if issubclass(t, (np.bool_, np.integer, np.floating, np.str_)):
        return lambda obj: _convert(obj.item())
    if issubclass(t, np.bytes_):
        return _bytes
    return _unsupported


def _array(a: Any) -> Any:
    import numpy as np

    kind = a.dtype.kind
    if kind in "iub" or kind == "U":
        return a.tolist()
    if kind == "f":
        return _float_list(a)
    if kind == "M":
        text = np.datetime_as_string(a).astype(object)
        text[np.isnat(a)] = None
        return text.tolist()
    if kind == "m":
        return _float_list(a / np.timedelta64(1, "s"))
    if kind in "OS":
        return _convert(a.tolist())
    raise NoJsonForm(f"numpy.ndarray of dtype {a.dtype}")


def _float_list(a: Any) -> Any:
    import numpy as np

    finite = np.isfinite(a)
    if finite.all():
        return a.tolist()
    out = a.astype(object)
    out[~finite] = None
    return out.tolist()


def _pandas_converter(t: type) -> Callable[[Any], Any] | None:
    import pandas as pd

    if issubclass(t, pd.DataFrame):
        return _frame
    if issubclass(t, (pd.Series, pd.Index)):
        return _column
    if t is type(pd.NaT) or t is type(pd.NA):
        return lambda obj: None
    if issubclass(t, pd.Timedelta):
        return lambda obj: obj.total_seconds()
    if issubclass(t, pd.Categorical):
        return lambda obj: _list(obj.to_numpy(dtype=object))
    return None


def _column(s: Any) -> list:
    """A Series (or Index) -> list, vectorised for numpy dtypes; the index is dropped."""
    import numpy as np

    dtype = s.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iubf":
        return _array(s.to_numpy())
    values = s.to_numpy(dtype=object).tolist()
    if all(type(v) is str for v in values):
        return values  # a text column, the common case: no per-item conversion
    return _list(values)


def _frame(df: Any) -> list:
    """A DataFrame -> list of records `{column: value}`, like `to_json(orient="records")`."""
    if not df.columns.is_unique:
        raise NoJsonForm("pandas.DataFrame", "column names must be unique")
    keys = []
    for name in df.columns:
        try:
            keys.append(_key(name))
        except NoJsonForm as exc:
            exc.detail = f"column name {name!r} {exc.detail}".strip()
            raise
    columns = []
    for position, key in enumerate(keys):
        try:
            columns.append(_column(df.iloc[:, position]))
        except NoJsonForm as exc:
            # segments run innermost first and the row index was added last: the column name
            # goes just before it, so the path reads result[row]["column"]...
            exc.segments.insert(len(exc.segments) - 1, f"[{json.dumps(key)}]")
            raise
    if not columns:
        return [{} for _ in range(len(df))]
    if len(keys) > 255:
        return [dict(zip(keys, row)) for row in zip(*columns)]
    return _record_builder(tuple(keys))(columns)


@lru_cache(maxsize=64)
def _record_builder(keys: tuple[str, ...]) -> Callable[[list], list]:
    """`lambda columns: [{"a": v0, "b": v1} for v0, v1 in zip(*columns)]` for these keys: a dict
    display with constant keys builds each record in one step, about 1.5x faster than
    dict(zip(keys, row)), the largest cost of a big frame. The source holds only repr()s of
    strings and generated names, so compiling it runs nothing from the data."""
    names = [f"v{i}" for i in range(len(keys))]
    record = ", ".join(f"{key!r}: {name}" for key, name in zip(keys, names))
    source = f"lambda columns: [{{{record}}} for {', '.join(names)}, in zip(*columns)]"
    return eval(compile(source, "<verta_jupyter records>", "eval"), {"__builtins__": {"zip": zip}})
