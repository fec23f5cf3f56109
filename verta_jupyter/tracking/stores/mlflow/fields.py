"""How our key-value fields become MLflow params, metrics and tags, and back (lossless).

| field            | MLflow                                   | encoding                                 |
|------------------|------------------------------------------|------------------------------------------|
| hyperparameters  | params (immutable in MLflow), and the    | plain text for strings that do not look  |
|                  | tag `verta_jupyter.hp.<key>` once a      | like JSON, otherwise JSON (`0.1`, `3`,   |
|                  | value is overwritten                     | `true`, `"0.1"`)                         |
| metrics          | metrics (latest value wins); int/bool    | float; NaN as "NaN", inf as MLflow's     |
|                  | type kept in `verta_jupyter.mtype.<key>` | clamped max double                       |
|                  | non-numbers in `verta_jupyter.metric.<k>`| JSON                                     |
| attributes       | tags `verta_jupyter.attr.<key>`          | JSON                                     |
| tags (labels)    | tags `<key>`                             | "" for a plain label, else JSON          |

MLflow's own tags (`mlflow.*`) and ours (`verta_jupyter.*`) are never returned as user labels.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any, Mapping

PREFIX = "verta_jupyter."
HP_OVERRIDE = PREFIX + "hp."
METRIC_TYPE = PREFIX + "mtype."
METRIC_VALUE = PREFIX + "metric."
ATTRIBUTE = PREFIX + "attr."
SYSTEM_PREFIXES = ("mlflow.", PREFIX)
MAX_DOUBLE = 1.7976931348623157e308  # MLflow stores +-inf as +-max double

# log-batch limits (MLflow REST docs): per request 1000 metrics, 100 params+tags, 1 MB body.
MAX_METRICS, MAX_PARAMS_TAGS, MAX_BYTES = 1000, 100, 900_000

_last_ms = 0


def now_ms() -> int:
    """Strictly increasing wall-clock milliseconds: a re-logged metric must sort after the last."""
    global _last_ms
    _last_ms = max(int(time.time() * 1000), _last_ms + 1)
    return _last_ms


def encode_text(value: Any) -> str:
    """A value as MLflow text: readable for plain strings, JSON for everything else."""
    if isinstance(value, str) and not _parses_as_json(value):
        return value
    return json.dumps(value, allow_nan=True)


def decode_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _parses_as_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def encode(field: str, values: Mapping[str, Any], current: dict) -> dict[str, list]:
    """{"params", "metrics", "tags"} lists for log-batch; `current` is the run's data now."""
    params, metrics, tags = [], [], []
    old_params = {p["key"]: p["value"] for p in current.get("params", [])}
    for key, value in values.items():
        key = str(key)
        if field == "hyperparameters":
            text = encode_text(value)
            if key not in old_params:
                params.append({"key": key, "value": text})
            if key in old_params and old_params[key] != text or HP_OVERRIDE + key in current["tags"]:
                tags.append({"key": HP_OVERRIDE + key, "value": text})
        elif field == "metrics":
            _encode_metric(key, value, metrics, tags, current["tags"])
        elif field == "attributes":
            tags.append({"key": ATTRIBUTE + key, "value": json.dumps(value, allow_nan=True)})
        else:
            tags.append({"key": key, "value": "" if value is None else encode_text(value)})
    return {"params": params, "metrics": metrics, "tags": tags}


def _encode_metric(key: str, value: Any, metrics: list, tags: list, old_tags: dict) -> None:
    numeric = isinstance(value, (int, float)) and not isinstance(value, complex)
    if not numeric:
        tags.append({"key": METRIC_VALUE + key, "value": json.dumps(value, allow_nan=True)})
        return
    if METRIC_VALUE + key in old_tags:  # it was a non-number before: that tag must not win
        tags.append({"key": METRIC_VALUE + key, "value": json.dumps(value, allow_nan=True)})
    number = float(value)
    wire: Any = "NaN" if math.isnan(number) else ("Infinity" if number == math.inf else
                                                 "-Infinity" if number == -math.inf else number)
    metrics.append({"key": key, "value": wire, "timestamp": now_ms(), "step": 0})
    kind = "bool" if isinstance(value, bool) else "int" if isinstance(value, int) else "float"
    if kind != "float" or METRIC_TYPE + key in old_tags:
        tags.append({"key": METRIC_TYPE + key, "value": kind})


def decode(field: str, data: dict) -> dict[str, Any]:
    """Our field from a run's `data` ({"params": [...], "metrics": [...], "tags": {...}})."""
    tags: dict[str, str] = data["tags"]
    if field == "hyperparameters":
        out = {p["key"]: decode_text(p["value"]) for p in data.get("params", [])
               if not p["key"].startswith(PREFIX)}  # our own params (claims) are not the user's
        out.update({k[len(HP_OVERRIDE):]: decode_text(v) for k, v in tags.items()
                    if k.startswith(HP_OVERRIDE)})
    elif field == "metrics":
        out = {m["key"]: _decode_metric(m["value"], tags.get(METRIC_TYPE + m["key"], "float"))
               for m in data.get("metrics", [])}
        out.update({k[len(METRIC_VALUE):]: json.loads(v) for k, v in tags.items()
                    if k.startswith(METRIC_VALUE)})
    elif field == "attributes":
        out = {k[len(ATTRIBUTE):]: json.loads(v) for k, v in tags.items() if k.startswith(ATTRIBUTE)}
    else:
        out = {k: (None if v == "" else decode_text(v)) for k, v in tags.items()
               if not k.startswith(SYSTEM_PREFIXES)}
    return dict(sorted(out.items()))


def _decode_metric(value: Any, kind: str) -> Any:
    number = float(value)  # the server sends NaN as the string "NaN"
    if abs(number) >= MAX_DOUBLE:
        number = math.copysign(math.inf, number)
    if kind == "int":
        return int(number)
    if kind == "bool":
        return bool(number)
    return number


def batches(payload: dict[str, list]) -> list[dict[str, list]]:
    """Split a log-batch payload so each request stays within MLflow's limits."""
    out: list[dict[str, list]] = []
    current = {"params": [], "metrics": [], "tags": []}
    size = 0
    for kind in ("params", "tags", "metrics"):
        for item in payload[kind]:
            item_size = len(json.dumps(item)) + 2
            n_pt = len(current["params"]) + len(current["tags"])
            full = (size + item_size > MAX_BYTES
                    or (kind == "metrics" and len(current["metrics"]) >= MAX_METRICS)
                    or (kind != "metrics" and n_pt >= MAX_PARAMS_TAGS))
            if full and any(current.values()):
                out.append(current)
                current, size = {"params": [], "metrics": [], "tags": []}, 0
            current[kind].append(item)
            size += item_size
    if any(current.values()):
        out.append(current)
    return out
