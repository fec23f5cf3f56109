"""The individual checks behind `verta_jupyter.validate`: pure functions returning Problems.

Kept apart from the orchestration in validate.py so each check reads (and is tested) alone.
None of these run user code.
"""
from __future__ import annotations

import ast
import inspect
import json
import math
import os
import re
import types
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

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


# -- secrets ---------------------------------------------------------------------------------

_STRONG_WORDS = {"password", "passwd", "pwd", "passphrase", "secret", "secrets", "token", "apikey",
                 "credential", "credentials", "auth", "bearer"}
_KEY_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"),
              ("client", "secret"), ("signing", "key"), ("encryption", "key")}
_VALUE_PATTERNS = [
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("an sk- API key", re.compile(r"\bsk-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_]{20,}")),
    ("a Stripe key", re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("a JSON Web Token", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a URL with a password", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")),
]


def name_words(name: str) -> list[str]:
    """`apiKey`, `API_KEY`, `OpenAIKey` -> lower-case words."""
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)]


def secret_name(name: str) -> str | None:
    """'strong' for names that say secret (password, token, ...), 'key' for *key*, else None."""
    words = name_words(name)
    if _STRONG_WORDS.intersection(words) or any(pair in _KEY_PAIRS for pair in zip(words, words[1:])):
        return "strong"
    return "key" if "key" in words or "keys" in words else None


def credential_kind(text: str) -> str | None:
    """What a string value looks like if it looks like a credential (never the value itself)."""
    for label, pattern in _VALUE_PATTERNS:
        if pattern.search(text):
            return label
    if _high_entropy(text):
        return "a long random-looking string"
    return None


def _high_entropy(text: str) -> bool:
    if len(text) < 32 or not re.fullmatch(r"[A-Za-z0-9+/=_\-.]+", text):
        return False
    if not (re.search(r"[a-z]", text) and re.search(r"[A-Z]", text) and re.search(r"\d", text)):
        return False  # lower-case hex digests and identifiers are not secrets
    counts = Counter(text)
    entropy = -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())
    return entropy >= 4.0


def secret_reason(name: str | None, value: Any) -> str | None:
    """Why `name = value` looks like a secret, or None."""
    if not isinstance(value, (str, bytes)):
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    kind = credential_kind(text)
    if kind:
        return f"holds what looks like {kind} ({redact(text)})"
    strength = secret_name(name) if name else None
    plausible = text and not re.search(r"[\s\\]", text) and len(text) >= 4
    if strength == "strong" and plausible:
        return f"is named like a secret and holds a string ({redact(text)})"
    if strength == "key" and plausible and len(text) >= 12 and re.search(r"\d", text) and re.search(r"[A-Za-z]", text):
        return f"is named like a key and holds a credential-like string ({redact(text)})"
    return None


def redact(text: str) -> str:
    """Enough of a secret to recognise it, never enough to use it."""
    return f"'{text[:3]}…', {len(text)} characters"


def secret_problems(captured: Any, namespace: dict) -> list[Problem]:
    """VJ203 for captured globals and literals in the generated source that look like secrets."""
    found: dict[str, Problem] = {}
    values = {**namespace, **(getattr(captured, "values", None) or {})}
    for dep in captured.dependencies:
        if dep.kind not in ("literal", "value") or dep.name not in values:
            continue
        for label, name, value in _walk(dep.name, dep.name, values[dep.name]):
            reason = secret_reason(name, value)
            if reason and label not in found:
                users = ", ".join(dep.used_by) or "the model"
                found[label] = problem("VJ203", f"'{label}' (used by {users}) {reason}", name=dep.name,
                                       where=dep.defined_in or None)
    flagged_text = {leaf for name in {p.name for p in found.values()}
                    for _, _, leaf in _walk(name, name, values[name])}
    for label, value, line in _source_strings(captured.source):
        reason = secret_reason(label, value)
        if reason and label not in found and value not in flagged_text:
            found[label] = problem("VJ203", f"'{label}' {reason}", name=label, where=f"model.py line {line}")
    return list(found.values())


def _walk(label: str, name: str, value: Any, depth: int = 0) -> Iterable[tuple[str, str, Any]]:
    """(label, nearest name, leaf) for strings inside plain containers, a few levels deep."""
    if isinstance(value, (str, bytes)):
        yield label, name, value
    elif depth < 3 and isinstance(value, dict):
        for key, item in list(value.items())[:1000]:
            inner = key if isinstance(key, str) else name
            yield from _walk(f"{label}[{key!r}]", inner, item, depth + 1)
    elif depth < 3 and isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(list(value)[:1000]):
            yield from _walk(f"{label}[{i}]", name, item, depth + 1)


def _source_strings(source: str) -> Iterable[tuple[str, str, int]]:
    """(name, string, line) for string constants in model.py; name from the assignment target."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return
    named: set[int] = set()
    for node in ast.walk(tree):
        targets, value = _assignment(node)
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            for target in targets:
                label = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
                if label:
                    named.add(id(value))
                    yield label, value.value, node.lineno
        elif isinstance(node, ast.Dict):
            for key, item in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and isinstance(key.value, str) and isinstance(item, ast.Constant):
                    named.add(id(item))
                    yield key.value, item.value, item.lineno
        elif isinstance(node, ast.keyword) and node.arg and isinstance(node.value, ast.Constant):
            named.add(id(node.value))
            yield node.arg, node.value.value, node.value.lineno
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in named:
            yield "a string literal", node.value, node.lineno


def _assignment(node: ast.AST) -> tuple[list[ast.expr], ast.expr | None]:
    if isinstance(node, ast.Assign):
        return node.targets, node.value
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
        return [node.target], node.value
    return [], None


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
