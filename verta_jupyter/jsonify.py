"""Known Python types <-> strict JSON (RFC 8259): what a model returns, and what `predict` receives.

`to_json_compatible(obj)` turns a model's output into plain dicts, lists, strings, numbers,
booleans and None, each known type in one documented form (docs/json-types.md); NaN and
infinities become null because bare `NaN` tokens are not JSON and break other clients.
Anything without a form raises `JsonConversionError` naming the type and where it sits in the
output (`result["scores"][3]`). `convert_input` does the reverse for `predict`'s argument when
its parameter is annotated (`pandas.DataFrame`, `numpy.ndarray`, dataclasses, ...).

numpy and pandas are never imported here: a value of their types can only exist once they are
imported, and an annotation that names them asks for them explicitly. Tables and arrays are
converted column by column with numpy, not cell by cell in Python.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import json
import math
import uuid
import weakref
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Callable

from .catalog import problem
from .errors import JsonConversionError

__all__ = ["to_json_compatible", "dumps", "from_json_compatible", "convert_input"]


class _NoJsonForm(Exception):
    """Raised deep inside the conversion; each container on the way out adds its key."""

    def __init__(self, type_name: str, detail: str = ""):
        super().__init__(type_name)
        self.type_name, self.detail, self.segments = type_name, detail, []


def to_json_compatible(obj: Any, *, root: str = "result") -> Any:
    """Return `obj` as plain JSON values (see docs/json-types.md); NaN/Inf become None.

    Raises JsonConversionError naming the value's type and its path under `root`.
    """
    try:
        return _convert(obj)
    except _NoJsonForm as exc:
        where = root + "".join(reversed(exc.segments))
        detail = f" ({exc.detail})" if exc.detail else ""
        message = (f"{where}: a value of type {exc.type_name} has no JSON form{detail}. Convert it "
                   "to a dict, list, str, number or a known type (numpy, pandas, datetime, ...) "
                   "before returning it")
        found = problem("VJ403", f"{where} is a {exc.type_name}{detail}", name=exc.type_name,
                        where=where)
        error = JsonConversionError(message, [found])
        error.path, error.type_name = where, exc.type_name
        raise error from None


def dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON text for `obj` (never a NaN token); keyword arguments go to `json.dumps`."""
    return json.dumps(to_json_compatible(obj), allow_nan=False, **kwargs)


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


def _type_name(t: type) -> str:
    module = t.__module__
    return t.__qualname__ if module in ("builtins", "__main__") else f"{module}.{t.__qualname__}"


def _unsupported(obj: Any) -> Any:
    raise _NoJsonForm(_type_name(type(obj)))


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
    raise _NoJsonForm(_type_name(type(key)), "as a key")


def _dict(obj: Mapping) -> dict:
    out = {}
    for k, v in obj.items():
        try:
            out[_key(k)] = _convert(v)
        except _NoJsonForm as exc:
            exc.segments.append(f"[{json.dumps(str(k))}]")
            raise
    if len(out) != len(obj):
        raise _NoJsonForm(_type_name(type(obj)), "two keys have the same JSON string form")
    return out


def _list(obj: Any) -> list:
    out = []
    for i, v in enumerate(obj):
        try:
            out.append(_convert(v))
        except _NoJsonForm as exc:
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
    raise _NoJsonForm(f"numpy.ndarray of dtype {a.dtype}")


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
    return _list(s.to_numpy(dtype=object))


def _frame(df: Any) -> list:
    """A DataFrame -> list of records `{column: value}`, like `to_json(orient="records")`."""
    if not df.columns.is_unique:
        raise _NoJsonForm("pandas.DataFrame", "column names must be unique")
    keys = []
    for name in df.columns:
        try:
            keys.append(_key(name))
        except _NoJsonForm as exc:
            exc.detail = f"column name {name!r} {exc.detail}".strip()
            raise
    columns = []
    for position, key in enumerate(keys):
        try:
            columns.append(_column(df.iloc[:, position]))
        except _NoJsonForm as exc:
            # segments run innermost first and the row index was added last: the column name
            # goes just before it, so the path reads result[row]["column"]...
            exc.segments.insert(len(exc.segments) - 1, f"[{json.dumps(key)}]")
            raise
    if not columns:
        return [{} for _ in range(len(df))]
    return [dict(zip(keys, row)) for row in zip(*columns)]


# -- input: JSON values -> the type `predict` asks for ----------------------------------------

def from_json_compatible(data: Any, annotation: Any, *, root: str = "data") -> Any:
    """Convert JSON `data` into `annotation`'s type where it is a known type; else return `data`.

    Known: pandas DataFrame/Series, numpy ndarray, datetime/date/time/timedelta, Decimal, UUID,
    Path, bytes, Enum, set/frozenset/tuple, dataclasses, pydantic models, and `list[X]`,
    `dict[str, X]`, `tuple[X, ...]`, `Optional[X]` of those. A string annotation naming
    DataFrame/Series/ndarray is understood too. Raises JsonConversionError naming the path.
    """
    return _from_root(data, _resolve_annotation(annotation, {}), root)


def convert_input(predict_method: Callable[..., Any], data: Any) -> Any:
    """Turn JSON `data` into the type `predict`'s data parameter is annotated with (if any).

    Works for bound methods and plain functions (a leading `self` is skipped) and for string
    annotations (`from __future__ import annotations`), resolved in the method's module.
    """
    annotation = _data_annotation(predict_method)
    if annotation is None:
        return data
    return _from_root(data, annotation, "data")


def _from_root(data: Any, annotation: Any, root: str) -> Any:
    try:
        return _from(data, annotation)
    except _NoJsonForm as exc:
        where = root + "".join(reversed(exc.segments))
        error = JsonConversionError(f"{where}: cannot make a {exc.type_name} from this JSON "
                                    f"value ({exc.detail}). Send the form docs/json-types.md "
                                    "documents for it")
        error.path, error.type_name = where, exc.type_name
        raise error from None


_ANNOTATION_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _data_annotation(method: Callable[..., Any]) -> Any:
    import inspect

    func = getattr(method, "__func__", method)
    try:
        return _ANNOTATION_CACHE[func]
    except (KeyError, TypeError):
        pass
    try:
        params = [p for p in inspect.signature(func).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    annotation = None
    if params and params[0].annotation is not inspect.Parameter.empty:
        namespace = getattr(inspect.unwrap(func), "__globals__", {})
        annotation = _resolve_annotation(params[0].annotation, namespace)
    try:
        _ANNOTATION_CACHE[func] = annotation
    except TypeError:
        pass
    return annotation


_WRAPPERS = {"Optional", "typing.Optional", "Union", "typing.Union", "None"}
_TEXT_TYPES = {"DataFrame": ("pandas", "DataFrame"), "Series": ("pandas", "Series"),
               "ndarray": ("numpy", "ndarray"), "NDArray": ("numpy", "ndarray")}


def _resolve_annotation(annotation: Any, namespace: dict) -> Any:
    """A string annotation -> the object it names; None when it names nothing we convert to."""
    if not isinstance(annotation, str):
        return None if annotation in (Any, object) else annotation
    import typing

    try:
        return eval(annotation, {"typing": typing, **vars(typing)}, dict(namespace))  # noqa: S307
    except Exception:  # noqa: BLE001 - an unresolvable hint only means "no conversion"
        pass
    # e.g. "pd.DataFrame" where `pd` is only imported under TYPE_CHECKING
    import importlib
    import re

    names = [n for n in re.findall(r"[A-Za-z_][\w.]*", annotation) if n not in _WRAPPERS]
    found = _TEXT_TYPES.get(names[0].rsplit(".", 1)[-1]) if names else None
    if found is None:
        return None
    return getattr(importlib.import_module(found[0]), found[1])


def _from(data: Any, ann: Any) -> Any:
    import typing

    if ann is None or ann is Any or ann is object:
        return data
    origin = typing.get_origin(ann)
    if origin is not None:
        return _from_generic(data, origin, typing.get_args(ann))
    if not isinstance(ann, type):
        return data
    module = ann.__module__ or ""
    if module.startswith(("pandas", "numpy")):
        return _to_table(data, ann)
    try:
        return _from_class(data, ann)
    except _NoJsonForm:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as exc:
        raise _NoJsonForm(_type_name(ann), f"{type(exc).__name__}: {exc}") from None


def _from_generic(data: Any, origin: Any, args: tuple) -> Any:
    import types
    import typing

    if origin is typing.Union or origin is getattr(types, "UnionType", None):
        options = [a for a in args if a is not type(None)]
        if data is None and len(options) < len(args):
            return None
        return _from(data, options[0]) if len(options) == 1 else data
    if origin is typing.Annotated:
        return _from(data, args[0])
    item = args[0] if args else Any
    if origin in (list, set, frozenset) or (origin is tuple and len(args) == 2 and args[1] is ...):
        return origin(_from_items(data, [item] * len(data)))
    if origin is tuple:
        return tuple(_from_items(data, list(args)))
    if origin is dict or origin is Mapping:
        if not isinstance(data, dict):
            raise _NoJsonForm("dict", "expected a JSON object")
        key_type, value_type = args if len(args) == 2 else (str, Any)
        return {_from_key(k, key_type): _from_item(v, value_type, f"[{json.dumps(k)}]")
                for k, v in data.items()}
    return data


def _from_key(key: str, ann: Any) -> Any:
    """JSON keys are strings: `dict[int, X]` and friends need them parsed back."""
    if ann in (int, float) or (isinstance(ann, type) and issubclass(ann, (int, float))
                               and not issubclass(ann, enum.Enum)):
        try:
            return ann(key)
        except ValueError as exc:
            raise _NoJsonForm(ann.__name__, f"key {key!r}: {exc}") from None
    return key if ann is str else _from(key, ann)


def _from_items(data: Any, types: list) -> list:
    if not isinstance(data, list) or len(data) != len(types):
        raise _NoJsonForm("list", f"expected a JSON array of {len(types)} items")
    return [_from_item(v, t, f"[{i}]") for i, (v, t) in enumerate(zip(data, types))]


def _from_item(value: Any, ann: Any, segment: str) -> Any:
    try:
        return _from(value, ann)
    except _NoJsonForm as exc:
        exc.segments.append(segment)
        raise


def _from_class(data: Any, ann: type) -> Any:
    if isinstance(data, ann) and not isinstance(data, (list, dict)):
        return data
    if issubclass(ann, enum.Enum):
        return ann(tuple(data) if isinstance(data, list) else data)
    if issubclass(ann, bool) or ann in (int, str, list, dict):
        return data
    if issubclass(ann, float):
        return float("nan") if data is None else ann(data)
    if issubclass(ann, _dt.datetime):
        return ann.fromisoformat(data)
    if issubclass(ann, (_dt.date, _dt.time)):
        return ann.fromisoformat(data)
    if issubclass(ann, _dt.timedelta):
        return ann(seconds=data)
    if issubclass(ann, Decimal):
        return ann("NaN") if data is None else ann(str(data))
    if issubclass(ann, (uuid.UUID, PurePath)):
        return ann(data)
    if issubclass(ann, (bytes, bytearray)):
        return ann(base64.b64decode(data, validate=True))
    if issubclass(ann, (set, frozenset, tuple)):
        return ann(data)
    if dataclasses.is_dataclass(ann):
        return _from_dataclass(data, ann)
    if hasattr(ann, "model_validate"):
        return ann.model_validate(data)
    return data


def _from_dataclass(data: Any, ann: type) -> Any:
    import typing

    if not isinstance(data, dict):
        raise _NoJsonForm(_type_name(ann), "expected a JSON object")
    hints = typing.get_type_hints(ann)
    kwargs = {f.name: _from_item(data[f.name], hints.get(f.name), f"[{json.dumps(f.name)}]")
              for f in dataclasses.fields(ann) if f.init and f.name in data}
    return ann(**kwargs)


def _to_table(data: Any, ann: type) -> Any:
    """JSON records / columns / rows -> DataFrame, a list -> Series or ndarray."""
    if isinstance(data, ann):
        return data
    name = ann.__name__
    try:
        if name == "DataFrame":
            if isinstance(data, dict):
                columns = all(isinstance(v, list) for v in data.values()) and data
                return ann(data) if columns else ann([data])
            return ann(data)
        if name == "Series":
            return ann(data)
        if name == "ndarray":
            return _to_array(data)
    except (TypeError, ValueError) as exc:
        raise _NoJsonForm(_type_name(ann), f"{type(exc).__name__}: {exc}") from None
    return data


def _to_array(data: Any) -> Any:
    import numpy as np

    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        data = [list(r.values()) for r in data]
    array = np.asarray(data)
    if array.dtype == object:
        # null is how NaN travels (to_json_compatible); numbers with nulls become floats again
        try:
            return np.asarray(data, dtype=float)
        except (TypeError, ValueError):
            return array
    return array
