"""An MLflow model signature for a package, inferred from its JSON sample without mlflow.

    signature_for(sample_input, sample_output) -> {"inputs": "...", "outputs": "...", "params": None}

is exactly `mlflow.models.infer_signature(sample_input, sample_output).to_dict()` for the JSON
values a package's sample can hold (ported from mlflow/types/utils.py `_infer_schema` and the
`_merge` rules of mlflow/types/schema.py, MLflow 3.17; tests/test_mlflow_native.py compares
the two over many shapes with the real mlflow). The kernel never imports mlflow (~850 MB).

A signature is written only for a sample MLflow can express faithfully: one whose schema
enforcement (`mlflow.models.utils._enforce_schema`, which turns every input into a DataFrame)
the generated entry can undo back to the very JSON that was sent (`sample_kind`). For the
rest (nested lists, records with different keys or missing values, mixed-type lists, `[]`,
`null`) MLflow would reject the sample itself or hand `predict` something else (an int column
turned float, a list spread over rows), so no signature is written at all.
"""
from __future__ import annotations

import json
from typing import Any

#: What the entry undoes enforcement back to: a dict, a list of records, a scalar or a list
#: of scalars. None: no faithful form, no signature.
KINDS = ("dict", "records", "scalar", "scalars")

_SCALARS = {bool: "boolean", int: "long", float: "double", str: "string"}
_ANY = ("any",)


class _Unexpressible(ValueError):
    """MLflow's inference raises for this value (mixed types, an unsupported scalar)."""


def signature_for(sample_input: Any, sample_output: Any = None) -> dict | None:
    """MLmodel's `signature` mapping for a JSON sample, or None (see the module docstring)."""
    if sample_kind(sample_input) is None:
        return None
    return {"inputs": schema_json(sample_input),
            "outputs": None if sample_output is None else schema_json(sample_output),
            "params": None}


def schema_json(value: Any) -> str:
    """`infer_signature`'s schema of one JSON value, as the JSON text MLmodel holds: where
    MLflow's inference fails it falls back to one unnamed `any` column, and so do we."""
    try:
        specs = _schema(value)
    except _Unexpressible:
        specs = [{"type": "any", "required": True}]
    return json.dumps(specs)


def sample_kind(value: Any) -> str | None:
    """The shape class of a sample whose enforcement the entry can undo exactly, else None."""
    if type(value) in _SCALARS:
        return "scalar"
    try:
        if isinstance(value, dict) and value:
            _schema(value)
            # pandas cannot make a one-row frame of a {} beside other values, so MLflow
            # refuses the sample itself
            return None if {} in value.values() or _none_in_list(value) else "dict"
        if isinstance(value, list) and value and all(isinstance(v, dict) and v for v in value):
            keys = set(value[0])
            if all(set(v) == keys and None not in v.values() for v in value) \
                    and not _none_in_list(value):
                _schema(value)
                return "records"
        if isinstance(value, list) and value and len({type(v) for v in value}) == 1 \
                and type(value[0]) in _SCALARS:
            return "scalars"
    except _Unexpressible:
        return None
    return None


def _none_in_list(value: Any) -> bool:
    """A null inside a list (at any depth): enforcement turns `[1, null]` into floats or
    refuses it, so such a sample has no faithful schema."""
    todo = [(value, False)]
    while todo:
        item, in_list = todo.pop()
        if item is None and in_list:
            return True
        if isinstance(item, dict):
            todo.extend((v, False) for v in item.values())
        elif isinstance(item, list):
            todo.extend((v, True) for v in item)
    return False


# -- MLflow's inference, for JSON values ------------------------------------------------------
# Types are tuples: ("long",) a scalar, ("any",), ("array", item), ("object", {name: (type,
# required)}) with names sorted as MLflow's Object sorts them.

def _schema(value: Any) -> list[dict]:
    """mlflow.types.utils._infer_schema for a JSON value: the list of column specs."""
    if isinstance(value, list) and not value:
        return [{"type": "string", "required": True}]  # MLflow's backward-compatible choice
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        columns: dict[str, list] = {}
        for item in value:
            for key, v in item.items():
                columns.setdefault(key, []).append(v)
        return [_colspec(_infer(values)[1], name,
                         all(item.get(name) is not None for item in value))
                for name, values in columns.items()]
    if isinstance(value, dict):
        return [_colspec(_infer(v), name, _required(v)) for name, v in value.items()]
    if isinstance(value, list):
        return [_colspec(_infer(value)[1], None, True)]
    return [_colspec(_infer(value), None, True)]


def _required(value: Any) -> bool:
    if isinstance(value, list):
        return not any(v is None for v in value)
    return value is not None


def _infer(value: Any) -> tuple:
    """mlflow.types.utils._infer_datatype."""
    if value is None or (isinstance(value, (list, dict)) and not value):
        return _ANY
    if isinstance(value, dict):
        return ("object", {k: (t, t != _ANY) for k, t in ((k, _infer(v)) for k, v in value.items())})
    if isinstance(value, list):
        result = None
        for item in value:
            t = _infer(item)
            if result is None:
                result = ("array", t)
            elif len(result[1]) > 1 or result[1] == _ANY:  # array, object or any: merge
                result = ("array", _merge(result[1], t))
            elif t != _ANY and t != result[1]:
                raise _Unexpressible("a list of several types")
        return result
    name = _SCALARS.get(type(value))
    if name is None:
        raise _Unexpressible(f"{type(value).__name__} is not a JSON scalar")
    return (name,)


def _merge(a: tuple, b: tuple) -> tuple:
    """The `_merge` of MLflow's Array, Object and AnyType (schema.py)."""
    if a == _ANY:
        return b if len(b) == 1 else _merge(b, a)
    if a[0] == "array":
        if b == _ANY or a == b:
            return a
        if b[0] != "array":
            raise _Unexpressible("an array merged with a non-array")
        if len(a[1]) == 1 and a[1] != _ANY:  # a scalar item type
            if a[1] == b[1] or b[1] == _ANY:
                return a
            raise _Unexpressible("arrays of different item types")
        return ("array", _merge(a[1], b[1]))
    if a[0] == "object":
        if b == _ANY:
            return ("object", {k: (t, False) for k, (t, _) in a[1].items()})
        if b[0] != "object":
            raise _Unexpressible("an object merged with a non-object")
        if a == b:
            return a
        pa, pb = a[1], b[1]
        merged = {k: (pa[k][0], False) for k in pa.keys() - pb.keys()}
        merged.update((k, _merge_property(pa[k], pb[k])) for k in pa.keys() & pb.keys())
        merged.update((k, (pb[k][0], False)) for k in pb.keys() - pa.keys())
        return ("object", merged)
    raise _Unexpressible("a scalar merged with another type")


def _merge_property(a: tuple, b: tuple) -> tuple:
    (ta, ra), (tb, rb) = a, b
    required = ra and rb
    if len(ta) == 1 and ta != _ANY:
        if ta == tb or tb == _ANY:
            return (ta, required)
        raise _Unexpressible("properties of different types")
    return (_merge(ta, tb), required)


def _to_dict(t: tuple) -> dict:
    if len(t) == 1:
        return {"type": t[0]}
    if t[0] == "array":
        return {"type": "array", "items": _to_dict(t[1])}
    return {"type": "object", "properties": {
        name: {**_to_dict(pt), "required": req} for name, (pt, req) in sorted(t[1].items())}}


def _colspec(t: tuple, name: str | None, required: bool) -> dict:
    spec = _to_dict(t)
    if name is not None:
        spec["name"] = name
    spec["required"] = required
    return spec
