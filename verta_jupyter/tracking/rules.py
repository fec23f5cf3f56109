"""Verta's rules for what a run accepts: keys, values, reserved names, overwrite.

These live above the store so every store (local, MLflow) enforces the same rules, and a bad
key or value is refused before anything is written.
"""
from __future__ import annotations

import numbers
import re
from typing import Any, Mapping

from ..catalog import RESERVED_ARTIFACT_KEYS, problem
from ..errors import AlreadyExistsError, InvalidKeyError, InvalidValueError, ValidationError

MAX_KEY_LENGTH = 128
# A key becomes a file name in some stores (MLflow artifacts), so: no "/", no "..", no leading
# dot or underscore (keys starting with "_" are the tracking layer's own).
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\- ]*")
#: Artifact keys Verta reserves for its own files (problem VJ302).

_WHAT = {"hyperparameters": "hyperparameter", "metrics": "metric", "attributes": "attribute",
         "tags": "tag", "artifacts": "artifact"}


def check_key(key: Any, field: str) -> str:
    """Return `key` if it is a valid key for `field`, else raise InvalidKeyError."""
    what = _WHAT[field]
    if not isinstance(key, str):
        raise InvalidKeyError(f"{what} key {key!r} is a {type(key).__name__}; use a string")
    if not key:
        raise InvalidKeyError(f"{what} key is empty; give it a name such as 'accuracy'")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"{what} key {key[:40]!r}... is {len(key)} characters long; keep it "
                              f"to {MAX_KEY_LENGTH}")
    if not _KEY.fullmatch(key) or key.endswith((" ", ".")):
        raise InvalidKeyError(f"{what} key {key!r} is not allowed: start with a letter or digit "
                              "and use only letters, digits, '_', '-', '.', and spaces (no '/')")
    return key


def check_artifact_key(key: Any) -> str:
    """Validate a user artifact key; reserved keys raise ValidationError (VJ302)."""
    check_key(key, "artifacts")
    if key in RESERVED_ARTIFACT_KEYS:
        raise ValidationError(problems=[problem("VJ302", f"artifact key '{key}' is reserved",
                                                name=key)])
    return key


def check_value(value: Any, field: str, key: str) -> Any:
    """The plain Python value to store for `key`, or InvalidValueError.

    hyperparameters: str, int, float or bool; metrics: a real number; attributes: any JSON
    value (dicts with string keys, lists, scalars). numpy scalars and arrays become plain values.
    """
    value = _plain(value)
    what = _WHAT[field]
    if field == "metrics":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidValueError(f"metric '{key}' must be a number, not {_describe(value)}; log "
                                    "collections with log_attribute")
        return value
    if field == "hyperparameters":
        if not isinstance(value, (str, int, float, bool)):
            raise InvalidValueError(f"hyperparameter '{key}' must be a string, number or bool, not "
                                    f"{_describe(value)}; log collections with log_attribute")
        return value
    return _json_value(value, f"{what} '{key}'")


def refuse_existing(existing: Mapping[str, Any], keys, field: str, owner: str) -> None:
    """Raise AlreadyExistsError if any of `keys` is already logged (Verta's overwrite rule)."""
    clash = sorted(k for k in keys if k in existing)
    if clash:
        what = _WHAT[field]
        raise AlreadyExistsError(f"{what} {', '.join(repr(k) for k in clash)} is already logged on "
                                 f"{owner}; pass overwrite=True to replace it")


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, numpy arrays -> lists (without importing numpy)."""
    if type(value).__module__ == "numpy":
        if hasattr(value, "tolist"):
            return value.tolist()
    return value


def _json_value(value: Any, label: str) -> Any:
    value = _plain(value)
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value  # NaN and infinities are kept: a diverged loss is worth recording
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v, label) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise InvalidValueError(f"{label}: dict keys must be strings")
        return {k: _json_value(v, label) for k, v in value.items()}
    raise InvalidValueError(f"{label} must be JSON-like (str, number, bool, None, list, dict), "
                            f"not {_describe(value)}; log other objects with log_artifact")


def _describe(value: Any) -> str:
    return f"a {type(value).__name__} ({value!r:.40})"
