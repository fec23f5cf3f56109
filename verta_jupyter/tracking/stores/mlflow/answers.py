"""What MLflow's answers must look like before we read them.

A tracking server is untrusted input: a proxy may answer with an HTML page, a server of
another version with `{}`, a hostile one with wrong types. Every object we read a field of
passes one of these checks first, so a bad answer becomes a `StoreError` naming the server,
the call and what was expected, never a `KeyError` or `TypeError` from deep inside the store.
Each check returns the object unchanged (so it reads as `run = answers.run(http, data, what)`).
"""
from __future__ import annotations

from typing import Any, Callable

from .rest import MlflowHttp

Check = Callable[[MlflowHttp, Any, str], dict]


def one(http: MlflowHttp, data: dict, key: str, check: Check, what: str) -> dict:
    """`data[key]`, checked: the single entity an MLflow "get" or "create" answers with."""
    if key not in data:
        raise http.malformed(what, f'a "{key}" object, got the keys {sorted(data)[:10]}')
    return check(http, data[key], what)


def many(http: MlflowHttp, data: dict, key: str, check: Check, what: str) -> list[dict]:
    """`data[key]` (absent = none), a list of checked entities: one page of a search."""
    items = data.get(key, [])
    if not isinstance(items, list):
        raise http.malformed(what, f'"{key}": a list, got a {type(items).__name__}')
    return [check(http, item, what) for item in items]


def page_token(http: MlflowHttp, data: dict, what: str) -> str | None:
    token = data.get("next_page_token") or None
    if token is not None and not isinstance(token, str):
        raise http.malformed(what, '"next_page_token": text')
    return token


def experiment(http: MlflowHttp, obj: Any, what: str) -> dict:
    _require(http, obj, what, "experiment", experiment_id=str, name=str)
    _optional(http, obj, what, "experiment", lifecycle_stage=str, creation_time=(int, str))
    _tags(http, obj.get("tags"), what, "experiment")
    return obj


def run(http: MlflowHttp, obj: Any, what: str) -> dict:
    _require(http, obj, what, "run", info=dict)
    info = obj["info"]
    _require(http, info, what, "run info", run_id=str, experiment_id=str,
             start_time=(int, str), artifact_uri=str)
    _optional(http, info, what, "run info", run_name=str, lifecycle_stage=str)
    if not str(info["start_time"]).lstrip("-").isdigit():
        raise http.malformed(what, f"a run whose start_time is a number, got {info['start_time']!r}")
    data = obj.get("data", {})
    if not isinstance(data, dict):
        raise http.malformed(what, '"data" of a run: an object')
    for name in ("params", "metrics"):
        entries = data.get(name, [])
        if not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get("key"), str) for e in entries):
            raise http.malformed(what, f'"{name}" of a run: a list of {{"key": text, ...}}')
    for p in data.get("params", []):
        if not isinstance(p.get("value"), str):
            raise http.malformed(what, f"param {p['key']!r}: a text value")
    for m in data.get("metrics", []):
        if isinstance(m.get("value"), bool) or not isinstance(m.get("value"), (int, float, str)):
            raise http.malformed(what, f"metric {m['key']!r}: a number")
    _tags(http, data.get("tags"), what, "run")
    return obj


def registered_model(http: MlflowHttp, obj: Any, what: str) -> dict:
    _require(http, obj, what, "registered model", name=str)
    _optional(http, obj, what, "registered model", creation_timestamp=(int, str))
    _tags(http, obj.get("tags"), what, "registered model")
    return obj


def model_version(http: MlflowHttp, obj: Any, what: str) -> dict:
    _require(http, obj, what, "model version", name=str, version=(str, int))
    _optional(http, obj, what, "model version", run_id=str, creation_timestamp=(int, str))
    if not str(obj["version"]).isdigit():
        raise http.malformed(what, f"a model version number, got {obj['version']!r}")
    obj["version"] = str(obj["version"])
    _tags(http, obj.get("tags"), what, "model version")
    return obj


def logged_model(http: MlflowHttp, obj: Any, what: str) -> dict:
    """An MLflow 3 logged model: {"info": {"model_id", "artifact_uri", ...}, "data": ...}."""
    _require(http, obj, what, "logged model", info=dict)
    _require(http, obj["info"], what, "logged model info", model_id=str, artifact_uri=str)
    _optional(http, obj["info"], what, "logged model info", experiment_id=str, status=str,
              source_run_id=str)
    return obj


def _require(http: MlflowHttp, obj: Any, what: str, label: str, **fields: Any) -> None:
    if not isinstance(obj, dict):
        raise http.malformed(what, f"a {label} object, got a JSON {type(obj).__name__}")
    for key, types in fields.items():
        if not isinstance(obj.get(key), types) or isinstance(obj.get(key), bool):
            raise http.malformed(what, f'a {label} with "{key}" ({_names(types)}), got '
                                       f"{_shown(obj.get(key))}")


def _optional(http: MlflowHttp, obj: dict, what: str, label: str, **fields: Any) -> None:
    for key, types in fields.items():
        if key in obj and obj[key] is not None and not isinstance(obj[key], types):
            raise http.malformed(what, f'a {label} whose "{key}" is {_names(types)}, got '
                                       f"{_shown(obj[key])}")


def _tags(http: MlflowHttp, tags: Any, what: str, name: str) -> None:
    if tags is None:
        return
    ok = (isinstance(tags, list) and all(
        isinstance(t, dict) and isinstance(t.get("key"), str)
        and isinstance(t.get("value", ""), str) for t in tags))
    if not ok:
        raise http.malformed(what, f'tags of a {name}: a list of {{"key": text, "value": text}}')


def _names(types: Any) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join({str: "text", int: "a number", dict: "an object", list: "a list"}.get(t, t.__name__)
                       for t in types)


def _shown(value: Any) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."
