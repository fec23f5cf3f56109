"""State a definition gained after its statement ran: what re-running the source would lose.

A notebook tunes things after defining them: `Model.THRESHOLD = 0.7`, `setattr(Model, ...)`, a
monkeypatched method, `helper.calls = 0`, `helper.__defaults__ = (...)`, overloads added to a
`functools.singledispatch` function. The statement's text says none of that, so each such
difference between the live object and what its statement makes becomes a patch after it in
model.py (`Model.THRESHOLD = 0.7`). Class-body values whose expression is not a plain literal
are patched with their live value too: `weights = np.random.rand(3)` must not be re-drawn.
"""
from __future__ import annotations

import ast
import inspect
import types
from dataclasses import dataclass

_MISSING = object()
# Function attributes that the decorators which made them set again when model.py runs.
_GENERATED_KEYS = {"_abc_impl", "_is_protocol", "_is_runtime_protocol"}
_REMADE_FUNCTION_ATTRS = {"__wrapped__", "registry", "dispatch", "register", "_clear_cache"}


@dataclass
class Patch:
    """`target.attribute = value` (or a call, for `register`) to emit after the definition."""

    attribute: str
    value: object
    required: bool  # False: a class-body value re-patched for safety; skip it if unpicklable
    # Data on a class is restored after every definition has run: defining a subclass, or
    # decorating a later function, may change it again (`__init_subclass__` appending to a
    # registry), and the notebook's value is the one after all of that.
    late: bool = False


def class_patches(cls: type, node: ast.ClassDef) -> list[Patch]:
    """Class dict entries that differ from (or are missing in) the class statement."""
    body = _body_bindings(node)
    made_by_others = bool(node.decorator_list) or type(cls) is not type  # may add entries themselves
    patches = []
    for key, value in list(vars(cls).items()):
        dunder = key.startswith("__") and key.endswith("__")
        sunder = key.startswith("_") and key.endswith("_") and not dunder and len(key) > 2
        if key not in body:
            if dunder or sunder or key in _GENERATED_KEYS or _generated(value):
                continue  # made by type(), a decorator or a metaclass when the statement runs
            patches.append(Patch(key, value, required=not made_by_others, late=_is_plain_data(value)))
            continue
        statement = body[key]
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not _is_own_method(cls, value, statement):
                patches.append(Patch(key, value, required=True))  # monkeypatched
        elif isinstance(statement, ast.ClassDef) or isinstance(value, cls):
            continue  # a nested class, or an Enum member: the statement makes it
        elif not _literal_matches(statement, value) and _is_plain_data(value):
            patches.append(Patch(key, value, required=not _has_value(statement), late=True))
    return patches


def function_patches(fn: types.FunctionType, node, namespace: dict) -> list[Patch]:
    """Attributes and defaults a function gained or changed after its `def`."""
    patches = [Patch(key, value, required=True) for key, value in list(vars(fn).items())
               if key not in _REMADE_FUNCTION_ATTRS]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = node.args
        if not _defaults_match([*args.defaults], fn.__defaults__ or (), namespace):
            patches.append(Patch("__defaults__", fn.__defaults__, required=True))
        kw = [d for d in args.kw_defaults if d is not None]
        live_kw = [v for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None
                   for v in [(fn.__kwdefaults__ or {}).get(a.arg, _MISSING)]]
        if not _defaults_match(kw, tuple(live_kw), namespace) or \
                set(fn.__kwdefaults__ or {}) != {a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None}:
            patches.append(Patch("__kwdefaults__", fn.__kwdefaults__, required=True))
    return patches


def dispatch_overloads(fn) -> list[tuple[type, types.FunctionType]]:
    """(type, implementation) pairs registered on a `functools.singledispatch` function."""
    registry = getattr(fn, "registry", None)
    if registry is None or not hasattr(fn, "register") or not hasattr(registry, "items"):
        return []
    base = getattr(fn, "__wrapped__", None)
    return [(kind, impl) for kind, impl in list(registry.items())
            if kind is not object and impl is not base and isinstance(impl, types.FunctionType)]


def _body_bindings(node: ast.ClassDef) -> dict[str, ast.stmt]:
    bound: dict[str, ast.stmt] = {}
    for statement in node.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound[statement.name] = statement
        elif isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        bound[name.id] = statement
        elif isinstance(statement, (ast.Import, ast.ImportFrom)):
            for alias in statement.names:
                bound[alias.asname or alias.name.split(".")[0]] = statement
    return bound


def _is_own_method(cls: type, value, statement) -> bool:
    """The function in the class dict is the one the `def` in the class body made."""
    function = value
    for attribute in ("__func__", "fget", "func"):
        function = getattr(function, attribute, function)
    function = inspect.unwrap(function) if callable(function) else function
    if not isinstance(function, types.FunctionType):
        return not isinstance(value, types.FunctionType)  # a descriptor a decorator made
    if function.__qualname__.startswith(cls.__qualname__ + "."):
        return True
    return bool(statement.decorator_list) and "<locals>" in function.__qualname__  # a decorator's wrapper


def _literal_matches(statement, value) -> bool:
    expression = getattr(statement, "value", None)
    if expression is None or isinstance(statement, ast.AugAssign):
        return False
    if isinstance(statement, ast.Assign) and (len(statement.targets) != 1 or not isinstance(statement.targets[0], ast.Name)):
        return False
    try:
        literal = ast.literal_eval(expression)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return type(literal) is type(value) and literal == value


def _has_value(statement) -> bool:
    return getattr(statement, "value", None) is not None


def _is_plain_data(value) -> bool:
    """A value (not code, a class, a module or a descriptor) that a patch can restore."""
    if isinstance(value, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
                          staticmethod, classmethod, property)):
        return False
    return not hasattr(type(value), "__get__")


def _generated(value) -> bool:
    code = getattr(value, "__code__", None)
    return code is not None and code.co_filename == "<string>"  # dataclasses, namedtuple


def _defaults_match(expressions: list, live: tuple, namespace: dict) -> bool:
    if len(expressions) != len(live):
        return False
    for expression, value in zip(expressions, live):
        if isinstance(expression, ast.Name) and namespace.get(expression.id, _MISSING) is value:
            continue  # `k=K`: K is captured as it is now, and it is still this object
        try:
            literal = ast.literal_eval(expression)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False
        if type(literal) is not type(value) or literal != value:
            return False
    return True
