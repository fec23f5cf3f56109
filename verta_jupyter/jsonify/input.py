"""JSON values -> the type `predict` asks for (the input side of jsonify).

`convert_input(predict, data)` reads the annotation on `predict`'s data parameter and builds
that type from JSON: `pandas.DataFrame` from records, columns or rows, `numpy.ndarray` from
nested lists, dataclasses, pydantic models, datetimes, ... (docs/json-types.md). Without an
annotation the JSON value is passed through unchanged. Importing `verta_jupyter.jsonify`
re-exports both public names from here.

numpy and pandas are imported only when an annotation names them.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import json
import uuid
import weakref
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Callable

from .forms import NoJsonForm, type_name
from ..errors import ErrorKind, JsonConversionError

__all__ = ["from_json_compatible", "convert_input"]


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
    except RecursionError:
        raise JsonConversionError(f"{root} is nested too deeply to convert (past Python's "
                                  "recursion limit). Send a flatter structure", path=root,
                                  kind=ErrorKind.INPUT) from None
    except NoJsonForm as exc:
        where = exc.where(root)
        raise JsonConversionError(f"{where}: cannot make a {exc.type_name} from this JSON "
                                  f"value ({exc.detail}). Send the form docs/json-types.md "
                                  "documents for it", path=where, type_name=exc.type_name,
                                  kind=ErrorKind.INPUT) from None


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
    except NoJsonForm:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as exc:
        raise NoJsonForm(type_name(ann), f"{type(exc).__name__}: {exc}") from None


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
            raise NoJsonForm("dict", "expected a JSON object")
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
            raise NoJsonForm(ann.__name__, f"key {key!r}: {exc}") from None
    return key if ann is str else _from(key, ann)


def _from_items(data: Any, types: list) -> list:
    if not isinstance(data, list) or len(data) != len(types):
        raise NoJsonForm("list", f"expected a JSON array of {len(types)} items")
    return [_from_item(v, t, f"[{i}]") for i, (v, t) in enumerate(zip(data, types))]


def _from_item(value: Any, ann: Any, segment: str) -> Any:
    try:
        return _from(value, ann)
    except NoJsonForm as exc:
        exc.segments.append(segment)
        raise


def _from_class(data: Any, ann: type) -> Any:
    import typing

    if typing.is_typeddict(ann):  # a dict with typed keys; isinstance() refuses it
        return _from_typed_dict(data, ann)
    if getattr(ann, "_is_protocol", False):  # a structural type: nothing to build
        return data
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
    if issubclass(ann, tuple) and hasattr(ann, "_fields"):  # a namedtuple: fields by name or place
        return _from_named_tuple(data, ann)
    if issubclass(ann, (set, frozenset, tuple)):
        return ann(data)
    if dataclasses.is_dataclass(ann):
        return _from_dataclass(data, ann)
    if hasattr(ann, "model_validate"):
        return ann.model_validate(data)
    return data


def _from_typed_dict(data: Any, ann: type) -> dict:
    import typing

    if not isinstance(data, dict):
        raise NoJsonForm(type_name(ann), "expected a JSON object")
    return _fields(data, typing.get_type_hints(ann))


def _from_named_tuple(data: Any, ann: type) -> tuple:
    import typing

    hints = typing.get_type_hints(ann)
    if isinstance(data, dict):
        return ann(**_fields(data, hints))
    if isinstance(data, list):
        return ann(*(_from_item(v, hints.get(f), f"[{i}]")
                     for i, (v, f) in enumerate(zip(data, ann._fields))), *data[len(ann._fields):])
    raise NoJsonForm(type_name(ann), "expected a JSON object or array")


def _fields(data: dict, hints: dict) -> dict:
    """Each value of a JSON object converted to its field's annotation (its path reported)."""
    return {k: _from_item(v, hints.get(k), f"[{json.dumps(k)}]") for k, v in data.items()}


def _from_dataclass(data: Any, ann: type) -> Any:
    import typing

    if not isinstance(data, dict):
        raise NoJsonForm(type_name(ann), "expected a JSON object")
    given = {f.name: data[f.name] for f in dataclasses.fields(ann) if f.init and f.name in data}
    kwargs = _fields(given, typing.get_type_hints(ann))
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
        raise NoJsonForm(type_name(ann), f"{type(exc).__name__}: {exc}") from None
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
