"""Captured values: literals become source; everything else is pickled, frozen at capture time.

Pickles hold data only. A value that refers to a notebook class or function (an instance of a
notebook dataclass, a dict of notebook functions) stores a *reference* to that definition
(pickle's persistent id = its name), and the definition itself goes into model.py as source.
So the pickle does not carry code objects and survives a change of Python version.
"""
from __future__ import annotations

import ast
import io
import math
import pickle
import types

LITERAL_REPR_LIMIT = 4000  # longer literals are pickled to keep model.py readable
_SCALARS = (int, float, complex, str, bytes, bool, type(None))


def literal_source(value) -> str | None:
    """Source text that evaluates to `value` exactly, or None if it is not a plain literal."""
    if not _is_plain_literal(value):
        return None
    text = repr(value)
    if len(text) > LITERAL_REPR_LIMIT:
        return None
    try:
        if ast.literal_eval(text) != value:
            return None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return text


def _is_plain_literal(value, depth: int = 0) -> bool:
    if depth > 20:
        return False
    kind = type(value)
    if kind in _SCALARS:
        return not (kind is float and not math.isfinite(value))
    if kind in (list, tuple):
        return all(_is_plain_literal(v, depth + 1) for v in value)
    if kind is set:
        return bool(value) and all(_is_plain_literal(v, depth + 1) for v in value)
    if kind is dict:
        return all(_is_plain_literal(k, depth + 1) and _is_plain_literal(v, depth + 1)
                   for k, v in value.items())
    return False


def _make_pickler(file, is_definition):
    import cloudpickle

    class _Pickler(cloudpickle.Pickler):
        """cloudpickle, but notebook definitions are stored as references by name."""

        def __init__(self, f):
            super().__init__(f, protocol=4)  # protocol 4: readable by every Python >= 3.4
            self.references: dict[str, object] = {}
            self.carries_code = False

        def reducer_override(self, obj):
            # cloudpickle stores a notebook function or class it cannot reference by value,
            # as bytecode: such a pickle only loads under this exact Python minor version
            if isinstance(obj, (types.FunctionType, types.CodeType, type)) and _by_value(obj):
                self.carries_code = True
            return super().reducer_override(obj)

        def persistent_id(self, obj):
            name = is_definition(obj)
            if name is None:
                return None
            self.references[name] = obj
            return name

    return _Pickler(file)


def _by_value(obj) -> bool:
    from cloudpickle import cloudpickle as implementation

    if isinstance(obj, types.CodeType):
        return True
    try:
        return not implementation._should_pickle_by_reference(obj)
    except Exception:  # a private helper of cloudpickle: assume the worst if it moved
        return True


def dump_value(value, is_definition) -> tuple[bytes, dict[str, object], bool]:
    """Pickle `value`; return its bytes, the notebook definitions it refers to by name, and
    whether it carries code by value (bytecode: tied to this Python minor version).

    `is_definition(obj)` returns the name a notebook class/function is bound to in model.py,
    or None for everything else. Raises whatever pickling raises (the caller explains it).
    """
    buffer = io.BytesIO()
    pickler = _make_pickler(buffer, is_definition)
    pickler.dump(value)
    return buffer.getvalue(), pickler.references, pickler.carries_code


class _RecordingUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, resolve):
        super().__init__(io.BytesIO(data))
        self._resolve = resolve
        self.modules: set[str] = set()

    def find_class(self, module, name):
        self.modules.add(module)
        return super().find_class(module, name)

    def persistent_load(self, pid):
        return self._resolve(pid)


def modules_needed(data: bytes, resolve) -> set[str]:
    """Modules a pickle imports when loaded (loads it once: also proves it loads)."""
    unpickler = _RecordingUnpickler(data, resolve)
    unpickler.load()
    return unpickler.modules


def describe(value) -> str:
    """A short human description: 'StandardScaler (sklearn.preprocessing._data)'."""
    kind = type(value)
    if isinstance(value, types.ModuleType):
        return f"module {value.__name__}"
    return f"{kind.__qualname__} ({kind.__module__})" if kind.__module__ != "builtins" else kind.__name__
