"""A structural fingerprint of captured objects: the fidelity proof, stronger than one sample.

One sample round trip misses every piece of state the sample does not touch (a class attribute
tuned after the `class` statement, a default changed later, an overload registered later). So
the notebook's captured objects and the rebuilt module's are compared piece by piece: each
class dict entry, each function's code, defaults, closure and attributes, each dispatch
registry and each captured value gets a digest under a path people can read
("MyModel.THRESHOLD", "score.__defaults__", "process.registry[int]"). Any path whose digest
differs names exactly what the package would get wrong, whatever the sample.

Digests are canonical, not pickles: sets are sorted, notebook definitions are named by qualname
(the notebook's `__main__` and the rebuilt module have different names), code objects are
compared without file names and line numbers, and anything without a stable form is "?",
which never fails a comparison (the proof must not cry wolf). Standard library only: this runs
inside the worker too.
"""
from __future__ import annotations

import __future__
import hashlib
import os
import sys
import types
import typing

UNKNOWN = "?"
_TYPE_PARAMETERS = tuple(getattr(typing, name) for name in ("TypeVar", "ParamSpec", "TypeVarTuple")
                         if hasattr(typing, name))
_MAX_DEPTH = 40
_MAX_ITEMS = 100_000
_FUTURE_FLAG = __future__.annotations.compiler_flag
_NESTED_FLAG = 0x10  # inspect.CO_NESTED: says where a `def` sat, not what it does
# Class dict entries that differ between a cell and a module for reasons that change nothing.
_SKIPPED_CLASS_KEYS = {"__dict__", "__weakref__", "__module__", "__qualname__", "__firstlineno__",
                       "__static_attributes__", "__verta_package__", "__annotations__",
                       "__slotnames__", "_abc_impl", "__annotate_func__", "__annotations_cache__"}
_SKIPPED_FUNCTION_ATTRS = {"__annotations__", "__verta_package__"}


def fingerprint(namespace: dict, names, local_modules: set[str],
                known_arrays: dict[int, tuple[object, str]] | None = None) -> dict[str, str]:
    """Path -> digest for every object bound to one of `names` in `namespace`.

    `local_modules` are the module names whose definitions are compared by content (the
    notebook's `__main__`, or the rebuilt model module): everything else is compared by name.
    `known_arrays` maps id(array) -> (array, sha256 of its C-order bytes) for arrays whose bytes
    were just hashed anyway (a captured array, hashed as it was written to its package file).
    """
    walker = _Walker(local_modules, known_arrays or {})
    paths: dict[str, str] = {}
    for name in sorted(names):
        if name not in namespace:
            paths[name] = "<missing>"
            continue
        walker.entries(name, namespace[name], paths)
    return paths


def differences(notebook: dict[str, str], rebuilt: dict[str, str]) -> list[str]:
    """Paths whose digests differ (unknown digests on either side never count)."""
    found = []
    for path, digest in notebook.items():
        other = rebuilt.get(path, "<missing>")
        if UNKNOWN in (digest, other):
            continue
        if digest != other:
            found.append(path)
    return found


class _Walker:
    def __init__(self, local_modules: set[str], known_arrays: dict[int, tuple[object, str]]):
        self.local = set(local_modules)
        self.known_arrays = known_arrays

    # -- top-level objects: one or many paths
    def entries(self, name: str, obj, paths: dict[str, str]) -> None:
        if isinstance(obj, type) and self.is_local(obj):
            self.class_entries(name, obj, paths)
        elif isinstance(obj, types.FunctionType) and self.is_local(obj):
            self.function_entries(name, obj, paths)
        else:
            paths[name] = self.digest(obj)

    def class_entries(self, name: str, cls: type, paths: dict[str, str]) -> None:
        paths[f"{name}.__bases__"] = self.digest(cls.__bases__)
        paths[f"{name}.__class__"] = self.digest(type(cls))
        for key, value in list(vars(cls).items()):
            if key in _SKIPPED_CLASS_KEYS:
                continue
            path = f"{name}.{key}"
            function = _function_inside(value)
            if function is not None and self.is_local(function) and _is_notebook_code(function):
                paths[f"{path}:{type(value).__name__}"] = "kind"
                self.function_entries(path, function, paths)
            else:
                paths[path] = self.digest(value)

    def function_entries(self, name: str, fn: types.FunctionType, paths: dict[str, str]) -> None:
        if _is_notebook_code(fn):
            paths[f"{name}.__code__"] = self.digest(fn.__code__)
            paths[f"{name}.__defaults__"] = self.digest(fn.__defaults__)
            paths[f"{name}.__kwdefaults__"] = self.digest(fn.__kwdefaults__)
            for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
                paths[f"{name}.__closure__.{var}"] = self.digest(_cell_contents(cell))
        else:  # made by library code (singledispatch, a wrapper): its attributes are the state
            paths[f"{name}.__code__"] = _library_ref(fn)
        for key, value in list(vars(fn).items()):
            if key in _SKIPPED_FUNCTION_ATTRS:
                continue
            if key == "registry" and hasattr(value, "items"):  # functools.singledispatch
                for kind, impl in list(value.items()):
                    paths[f"{name}.registry[{self.short(kind)}]"] = self.digest(impl)
                continue
            paths[f"{name}.{key}"] = self.digest(value)

    # -- one digest per value
    def is_local(self, obj) -> bool:
        return getattr(obj, "__module__", None) in self.local

    def short(self, kind) -> str:
        return getattr(kind, "__qualname__", None) or repr(kind)

    def digest(self, obj) -> str:
        try:
            text = self.canonical(obj, 0, set(), [0])
        except Exception:  # no stable form: never a difference
            return UNKNOWN
        if UNKNOWN in text:
            return UNKNOWN
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]

    def canonical(self, obj, depth: int, active: set[int], budget: list[int]) -> str:
        budget[0] += 1
        if depth > _MAX_DEPTH or budget[0] > _MAX_ITEMS:
            return UNKNOWN
        kind = type(obj)
        if obj is None or kind in (bool, int, float, complex, str, bytes):
            return f"{kind.__name__}:{obj!r}" if kind is not bytes or len(obj) < 256 else \
                f"bytes:{hashlib.sha256(obj).hexdigest()}"
        if id(obj) in active:
            return "<cycle>"
        active.add(id(obj))
        try:
            return self._container_or_object(obj, kind, depth + 1, active, budget)
        finally:
            active.discard(id(obj))

    def _container_or_object(self, obj, kind, depth, active, budget) -> str:
        inner = lambda value: self.canonical(value, depth, active, budget)  # noqa: E731
        if kind in (list, tuple):
            return f"{kind.__name__}[" + ",".join(inner(v) for v in obj) + "]"
        if isinstance(obj, (set, frozenset)):
            return f"{self.type_name(kind)}{{" + ",".join(sorted(inner(v) for v in obj)) + "}"
        if isinstance(obj, (dict, types.MappingProxyType)):
            return f"{self.type_name(kind)}{{" + ",".join(f"{inner(k)}:{inner(v)}" for k, v in list(obj.items())) + "}"
        if isinstance(obj, type):
            return self.type_name(obj)
        if isinstance(obj, types.ModuleType):
            return f"module:{obj.__name__}"
        if isinstance(obj, types.CodeType):
            return self.code(obj, inner)
        if isinstance(obj, types.FunctionType):
            return self.function(obj, inner)
        if isinstance(obj, (types.BuiltinFunctionType, types.MethodWrapperType)):
            return f"builtin:{getattr(obj, '__module__', '')}.{obj.__qualname__}"
        if isinstance(obj, types.MethodType):
            return f"method:{inner(obj.__func__)}@{inner(obj.__self__)}"
        if isinstance(obj, (staticmethod, classmethod)):
            return f"{kind.__name__}({inner(obj.__func__)})"
        if isinstance(obj, property):
            return f"property({inner(obj.fget)},{inner(obj.fset)},{inner(obj.fdel)})"
        if _is_ndarray(obj):
            return self.ndarray(obj, inner)
        if isinstance(obj, _TYPE_PARAMETERS):  # rebuilt by value: what it says, not where it lives
            return (f"{kind.__name__}:{obj.__name__}:{inner(getattr(obj, '__bound__', None))}:"
                    f"{inner(getattr(obj, '__constraints__', ()))}:"
                    f"{getattr(obj, '__covariant__', False)}:{getattr(obj, '__contravariant__', False)}")
        return self.reduced(obj, kind, inner)

    def type_name(self, cls: type) -> str:
        if cls.__module__ in self.local:
            return f"local:{cls.__qualname__}"
        return f"type:{cls.__module__}.{cls.__qualname__}"

    def code(self, code: types.CodeType, inner) -> str:
        consts = ",".join(inner(c) for c in code.co_consts)
        return (f"code:{_instructions(code)}|{consts}|{code.co_names}|{code.co_varnames}|"
                f"{code.co_freevars}|{code.co_cellvars}|{code.co_argcount}|{code.co_posonlyargcount}|"
                f"{code.co_kwonlyargcount}|{code.co_flags & ~(_FUTURE_FLAG | _NESTED_FLAG)}")

    def function(self, fn: types.FunctionType, inner) -> str:
        if not self.is_local(fn) or not _is_notebook_code(fn):
            return _library_ref(fn)
        # A notebook function inside a value: its code, defaults and closure tell one lambda,
        # overload or closure-made function from another.
        cells = tuple(_cell_contents(c) for c in fn.__closure__ or ())  # `make(2)` vs `make(3)`
        return f"fn:{fn.__name__}:{inner(fn.__code__)}:{inner(fn.__defaults__)}:{inner(cells)}"

    def ndarray(self, array, inner) -> str:
        head = f"ndarray:{array.dtype.str}:{array.shape}:"
        if array.dtype.hasobject:
            return head + inner(array.tolist())
        known = self.known_arrays.get(id(array))
        return head + (known[1] if known is not None and known[0] is array else _array_digest(array))

    def reduced(self, obj, kind, inner) -> str:
        """Anything else by its pickle reduction: what it would be rebuilt from."""
        if callable(obj) and hasattr(obj, "__wrapped__") and not isinstance(obj, type):
            return f"wrapper:{self.type_name(kind)}({inner(obj.__wrapped__)})"  # lru_cache & co
        reduction = obj.__reduce_ex__(4)
        if isinstance(reduction, str):  # pickled by name (a TypeVar, a singleton)
            module = getattr(obj, "__module__", "")
            return f"global:{'local' if module in self.local else module}.{reduction}"
        parts = list(reduction) + [None] * (6 - len(reduction))
        function, args, state, list_items, dict_items = parts[:5]
        if args and getattr(function, "__name__", "") == "__newobj__":
            args = args[1:]  # copyreg.__newobj__(cls, ...): the class is `kind` already
        listed = list(list_items) if list_items is not None else None
        mapped = list(dict_items) if dict_items is not None else None
        return (f"obj:{self.type_name(kind)}({inner(args)}|{inner(state)}|{inner(listed)}|{inner(mapped)}"
                f"|{inner(function)})")


_ROWS_BYTES = 8 << 20  # a non-contiguous array is hashed a block of rows at a time


def _array_digest(array) -> str:
    """sha256 of the array's elements in C order, hashed in place: a C-contiguous array (the
    usual case) is read through its buffer, never copied; any other array one block of rows
    at a time, so a 200 MB view costs 8 MB of memory, not 200."""
    import numpy  # already imported: the value is an array

    digest = hashlib.sha256()
    if array.ndim == 0 or array.size == 0:
        digest.update(array.tobytes())
    elif array.flags.c_contiguous:
        digest.update(array.reshape(-1).view(numpy.uint8))
    else:
        rows = max(1, _ROWS_BYTES // max(1, array[0].nbytes))
        for start in range(0, array.shape[0], rows):
            digest.update(numpy.ascontiguousarray(array[start:start + rows]).reshape(-1).view(numpy.uint8))
    return digest.hexdigest()


# Instructions the compiler picks by context (was the module imported in the same file?), not
# by what the code does: `np.mean(x)` compiles to LOAD_METHOD in a cell, LOAD_ATTR in model.py.
_NOISE_OPS = {"CACHE", "PRECALL", "PUSH_NULL", "KW_NAMES", "RESUME", "NOP", "EXTENDED_ARG",
              "COPY_FREE_VARS", "MAKE_CELL"}
_SAME_OPS = {"LOAD_METHOD": "LOAD_ATTR", "CALL_METHOD": "CALL", "CALL_FUNCTION": "CALL"}
_JUMP_WORDS = ("JUMP", "FOR_ITER", "SEND", "SETUP")


def _instructions(code: types.CodeType) -> str:
    """The code's operations and names, without offsets or compile-context choices."""
    import dis

    out = []
    for ins in dis.get_instructions(code):
        if ins.opname in _NOISE_OPS:
            continue
        name = _SAME_OPS.get(ins.opname, ins.opname)
        if any(word in name for word in _JUMP_WORDS) or isinstance(ins.argval, types.CodeType):
            out.append(name)
        else:
            out.append(f"{name} {ins.argval!r}" if ins.arg is not None else name)
    return hashlib.sha256(";".join(out).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _is_notebook_code(fn: types.FunctionType) -> bool:
    """Code written in the notebook (or model.py), not library code stamped `__main__` by wraps."""
    filename = fn.__code__.co_filename
    if not os.path.isfile(filename):
        return True  # a cell (ipykernel's cell files never exist on disk)
    return not filename.startswith(_LIBRARY_PREFIXES)  # model.py, a file run with %run


_LIBRARY_PREFIXES = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})


def _library_ref(fn) -> str:
    code = getattr(fn, "__code__", None)
    qualname = code.co_qualname if code is not None and hasattr(code, "co_qualname") else \
        getattr(fn, "__qualname__", type(fn).__qualname__)
    # library code by what it is called, not where: generated code's file names vary by process
    module = getattr(fn, "__module__", "") if code is None else ""
    return f"ref:{module}.{qualname}"


def _function_inside(value):
    for candidate in (value, getattr(value, "__func__", None), getattr(value, "fget", None),
                      getattr(value, "func", None)):
        if isinstance(candidate, types.FunctionType):
            return candidate
    return None


def _cell_contents(cell):
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell (a name assigned after the closure was made)
        return "<empty cell>"


def _is_ndarray(obj) -> bool:
    kind = type(obj)
    return kind.__module__ == "numpy" and kind.__name__ == "ndarray"


def fingerprint_module(module: types.ModuleType) -> dict[str, str]:
    """The fingerprint of every name a rebuilt model.py binds (its own helpers excluded)."""
    namespace = vars(module)
    names = [n for n in namespace if not n.startswith("_vj_") and not (n.startswith("__") and n.endswith("__"))]
    return fingerprint(namespace, names, {module.__name__})
