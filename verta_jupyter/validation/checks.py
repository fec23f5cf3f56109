"""The individual checks behind `verta_jupyter.validate`: pure functions returning Problems.

Kept apart from the orchestration in validate.py so each check reads (and is tested) alone.
None of these run user code.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import re
import types
from pathlib import Path
from typing import Any

from ..catalog import RESERVED_ARTIFACT_KEYS, problem
from ..errors import Problem

_PACKAGE_DIR = str(Path(__file__).resolve().parent) + os.sep


# -- the class itself ------------------------------------------------------------------------

def class_problems(obj: Any) -> list[Problem]:
    """VJ101 when `obj` is not a class at all, VJ103 when it is an instance of one."""
    if isinstance(obj, type):
        return []
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                        types.ModuleType)) or obj is None:
        name = getattr(obj, "__name__", repr(obj))
        return [problem("VJ101", f"'{name}' is a {type(obj).__name__}, not a class", name=name)]
    name = type(obj).__name__
    return [problem("VJ103", f"an instance of {name} was given instead of the class {name}", name=name)]


def interface_problems(cls: type) -> list[Problem]:
    """VJ111-VJ114: `predict(self, data)` as a plain method, `__init__` taking `artifacts=`."""
    return _predict_problems(cls) + _init_problems(cls)


def _predict_problems(cls: type) -> list[Problem]:
    name = cls.__name__
    try:
        raw = inspect.getattr_static(cls, "predict")
    except AttributeError:
        return [problem("VJ111", f"{name} has no method 'predict'", name=name, where=_class_where(cls))]
    if not isinstance(raw, types.FunctionType):
        kind = type(raw).__name__
        return [problem("VJ112", f"{name}.predict is a {kind}, not a plain method",
                        name=f"{name}.predict", where=_class_where(cls))]
    params = _parameters(raw)[1:]  # drop self
    required = [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    kw_required = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    takes_star = any(p.kind is p.VAR_POSITIONAL for p in params)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    ok = (len(required) == 1 or (not required and (positional or takes_star))) and not kw_required
    if ok:
        return []
    shown = ", ".join(["self", *(p.name for p in params)])
    return [problem("VJ113", f"{name}.predict({shown}) must take exactly one argument besides self",
                    name=f"{name}.predict", where=_where(raw))]


def _init_problems(cls: type) -> list[Problem]:
    name = cls.__name__
    init = cls.__init__
    if init is object.__init__:
        return [problem("VJ114", f"{name} has no __init__, so {name}(artifacts=artifacts) fails",
                        name=f"{name}.__init__", where=_class_where(cls))]
    params = _parameters(init)[1:] if inspect.isfunction(init) else None
    if params is None:
        return []  # a C-level or exotic __init__: construction in the notebook will tell
    by_keyword = any(p.name == "artifacts" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                     for p in params) or any(p.kind is p.VAR_KEYWORD for p in params)
    others = [p.name for p in params if p.name != "artifacts" and p.default is p.empty
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if by_keyword and not others:
        return []
    shown = ", ".join(["self", *(p.name for p in params)])
    why = ("does not accept 'artifacts' by keyword" if not by_keyword
           else f"also requires {', '.join(repr(o) for o in others)}, which deployment never passes")
    return [problem("VJ114", f"{name}.__init__({shown}) {why}", name=f"{name}.__init__",
                    where=_where(init))]


def _parameters(fn) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []


def _where(fn) -> str | None:
    code = getattr(inspect.unwrap(fn), "__code__", None)
    if code is None:
        return None
    return f"{describe_file(code.co_filename)} line {code.co_firstlineno}, in {fn.__qualname__}"


def _class_where(cls: type) -> str | None:
    """'cell line N, in class X': the `class` line, found above its first method."""
    import linecache

    for value in vars(cls).values():
        fn = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        code = getattr(inspect.unwrap(fn), "__code__", None) if callable(fn) else None
        if code is None:
            continue
        lines = linecache.getlines(code.co_filename)
        pattern = re.compile(rf"\s*class\s+{re.escape(cls.__name__)}\b")
        line = next((i + 1 for i in range(min(code.co_firstlineno, len(lines)) - 1, -1, -1)
                     if pattern.match(lines[i])), None)
        if line is not None:
            return f"{describe_file(code.co_filename)} line {line}, in class {cls.__name__}"
    return None


def describe_file(filename: str) -> str:
    """'cell' for a notebook cell, else the file's base name."""
    from ..capture.cells import describe_file as describe

    return describe(filename)


# -- artifacts and samples -------------------------------------------------------------------

def artifact_problems(paths: dict[str, Any], class_name: str) -> list[Problem]:
    """VJ302 for reserved keys, VJ301 for keys with no logged local path."""
    found = []
    for key, path in paths.items():
        if key in RESERVED_ARTIFACT_KEYS:
            found.append(problem("VJ302", f"artifact key '{key}' (used by {class_name}) is reserved",
                                 name=key))
        elif path is None or not os.path.exists(path):
            found.append(problem("VJ301", f"artifact '{key}' (used by {class_name}) is not logged to the run",
                                 name=key))
    return found


def json_sample_problem(sample: Any, class_name: str) -> Problem | None:
    """VJ303 unless `sample` is plain JSON (no NaN, no objects JSON cannot carry)."""
    path = _non_json_path(sample, "sample")
    if path is None:
        return None
    where, what = path
    return problem("VJ303", f"the sample for {class_name} is not JSON: {where} is {what}",
                   name=where)


def _non_json_path(value: Any, path: str, depth: int = 0) -> tuple[str, str] | None:
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"{value!r} (not allowed in strict JSON)")
    if depth > 100:
        return (path, "nested more than 100 levels deep")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _non_json_path(item, f"{path}[{i}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return (f"{path}[{key!r}]", f"a key of type {type(key).__name__} (JSON keys are strings)")
            found = _non_json_path(item, f"{path}[{json.dumps(key)}]", depth + 1)
            if found:
                return found
        return None
    return (path, f"a {type(value).__module__}.{type(value).__qualname__}".replace("builtins.", ""))


# -- tracebacks ------------------------------------------------------------------------------

def user_frames(exc: BaseException, cls: type) -> tuple[str, str | None]:
    """The traceback of `exc` without our own frames, and 'cell line N, in X.f' of the last user frame."""
    tb, entries, where = exc.__traceback__, [], None
    while tb is not None:
        code = tb.tb_frame.f_code
        if not code.co_filename.startswith(_PACKAGE_DIR):
            qualname = getattr(code, "co_qualname", code.co_name)
            entries.append((code.co_filename, tb.tb_lineno, qualname))
            if not _is_library(code.co_filename):
                where = f"{describe_file(code.co_filename)} line {tb.tb_lineno}, in {qualname}"
        tb = tb.tb_next
    lines = ["Traceback (your code, most recent call last):"]
    for filename, lineno, qualname in entries:
        lines.append(f"  {describe_file(filename)} line {lineno}, in {qualname}")
        text = _source_line(filename, lineno)
        if text:
            lines.append(f"    {text}")
    lines.append(f"{type(exc).__name__}: {exc}")
    return "\n".join(lines), where


def _is_library(filename: str) -> bool:
    import sysconfig

    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return any(filename.startswith(r + os.sep) for r in roots)


def _source_line(filename: str, lineno: int) -> str:
    import linecache

    return linecache.getline(filename, lineno).strip()
