"""Captured values: literals become source; everything else is pickled, frozen at capture time.

Pickles hold data only. A value that refers to a notebook class or function (an instance of a
notebook dataclass, a dict of notebook functions) stores a *reference* to that definition
(pickle's persistent id = its name), and the definition itself goes into model.py as source.
So the pickle does not carry code objects and survives a change of Python version.
"""
from __future__ import annotations

import ast
import atexit
import math
import os
import pickle
import shutil
import tempfile
import types
import uuid
import weakref
from pathlib import Path

from ..package import valuefiles

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


def _make_pickler(file, is_definition, buffer_callback):
    import cloudpickle

    class _Pickler(cloudpickle.Pickler):
        """cloudpickle, but notebook definitions are stored as references by name."""

        def __init__(self, f):
            # protocol 5 (Python >= 3.8): large buffers go out of band, straight to their file
            super().__init__(f, protocol=5, buffer_callback=buffer_callback)
            self.references: dict[str, object] = {}
            self.carries_code = False
            self.modules: set[str] = set()

        def reducer_override(self, obj):
            # cloudpickle stores a notebook function or class it cannot reference by value,
            # as bytecode: such a pickle only loads under this exact Python minor version
            if isinstance(obj, (types.FunctionType, types.CodeType, type)) and _by_value(obj):
                self.carries_code = True
            elif isinstance(obj, _GLOBALS):
                _note_module(obj, self.modules)
            return super().reducer_override(obj)

        def persistent_id(self, obj):
            name = is_definition(obj)
            if name is None:
                return None
            self.references[name] = obj
            return name

    return _Pickler(file)


_GLOBALS = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType,
            types.WrapperDescriptorType, types.ClassMethodDescriptorType)


def _note_module(obj, modules: set[str]) -> None:
    """The module a loader imports for `obj`: classes and functions are pickled as a reference
    to `module.name` (the reduce callables of every value are among them), which is exactly
    what loading the pickle would import. Recorded here, the pickle is never read again."""
    module = getattr(obj, "__module__", None) or _objclass_module(obj)
    if isinstance(module, str):
        modules.add(module)


def _objclass_module(obj):
    owner = getattr(obj, "__objclass__", None) or getattr(obj, "__self__", None)
    return getattr(owner if isinstance(owner, type) else type(owner), "__module__", None)


def _by_value(obj) -> bool:
    from cloudpickle import cloudpickle as implementation

    if isinstance(obj, types.CodeType):
        return True
    try:
        return not implementation._should_pickle_by_reference(obj)
    except Exception:  # a private helper of cloudpickle: assume the worst if it moved
        return True


# Buffers smaller than this stay inside the pickle stream: a value made of a thousand small
# arrays is one file, not a thousand, and only big data pays for a separate read.
OUT_OF_BAND_MIN = 64 << 10
# Values smaller than this are loaded once at capture (cheap), as before: a value that pickles
# but cannot be unpickled is then reported as the user's global, not as a failed rebuild.
LOAD_CHECK_MAX = 4 << 20


class StoredValue:
    """One pickled value on disk, written once and hashed as written: its pickle stream
    (`stream`), its out-of-band buffers back to back (`buffers`, with each one's size in
    `sizes`), their sha256 digests, and the modules loading it imports. The files live in
    this process's value spool and are removed when the object is collected (or at exit)."""

    def __init__(self, stream: Path, stream_sha256: str, buffers: Path | None, buffers_sha256: str,
                 sizes: list[int], modules: set[str], numeric: list[bool] | None = None):
        self.stream, self.stream_sha256 = stream, stream_sha256
        self.buffers, self.buffers_sha256 = buffers, buffers_sha256
        self.sizes, self.modules = sizes, modules
        self.numeric = numeric or [False] * len(sizes)  # per buffer: floating-point data
        self.array_digest: tuple[weakref.ref, str] | None = None  # see whole_array_digest
        self.nbytes = stream.stat().st_size + sum(sizes)
        paths = [p for p in (stream, buffers) if p is not None]
        weakref.finalize(self, _remove_files, paths)

    def __len__(self) -> int:
        return self.nbytes

    def in_band(self) -> bytes:
        """The pickle stream (small: big buffers are out of band)."""
        return self.stream.read_bytes()

    def chunks(self, size: int = 8 << 20):
        """All stored bytes (stream, then buffers) in chunks of at most `size`."""
        for path in (self.stream, self.buffers):
            if path is not None:
                yield from valuefiles.read_chunks(path, size)

    def text_chunks(self, size: int = 8 << 20):
        """The stored bytes that can hold text (for the secret scan), in chunks of at most
        `size`: the pickle stream and every buffer but floating-point ones. A float or complex
        array's bytes are numbers; a credential is stored as characters (a str or bytes array,
        a uint8 array, an object in the stream), and those are all read."""
        yield from valuefiles.read_chunks(self.stream, size)
        if self.buffers is None:
            return
        with open(self.buffers, "rb") as f:
            for n, numeric in zip(self.sizes, self.numeric):
                if numeric:
                    f.seek(n, os.SEEK_CUR)
                    continue
                while n > 0:
                    chunk = f.read(min(size, n))
                    if not chunk:
                        return
                    n -= len(chunk)
                    yield chunk

    def whole_array_digest(self, obj) -> str | None:
        """sha256 of `obj`'s bytes when `obj` is the C-contiguous array this value is, whose one
        buffer file was hashed as it was written (the fingerprint then need not hash it again)."""
        if self.array_digest is None or obj is None:
            return None
        ref, digest = self.array_digest
        return digest if ref() is obj else None

    def load(self, persistent_load):
        """The value, unpickled in this process (`persistent_load` resolves definitions)."""
        buffers = [bytearray(n) for n in self.sizes]
        if self.buffers is not None:
            with open(self.buffers, "rb", buffering=0) as f:
                for buffer in buffers:
                    _read_exactly(f, memoryview(buffer))
        with open(self.stream, "rb") as f:
            return _Unpickler(f, persistent_load, buffers).load()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, resolve, buffers):
        super().__init__(file, buffers=buffers)
        self._resolve = resolve

    def persistent_load(self, pid):  # a method: Python 3.13 refuses the attribute on instances
        return self._resolve(pid)


def _read_exactly(f, view: memoryview) -> None:
    while view:
        n = f.readinto(view)
        if not n:
            raise EOFError("a value's buffer file is shorter than its pickle says")
        view = view[n:]


def _remove_files(paths) -> None:
    for path in paths:
        valuefiles.remove(path)


def dump_value(value, is_definition) -> tuple[StoredValue, dict[str, object], bool]:
    """Pickle `value` to files in the value spool; return them as a StoredValue, the notebook
    definitions it refers to by name, and whether it carries code by value (bytecode: tied to
    this Python minor version).

    `is_definition(obj)` returns the name a notebook class/function is bound to in model.py,
    or None for everything else. Raises whatever pickling raises (the caller explains it),
    after removing what was written.
    """
    base = _spool() / uuid.uuid4().hex
    stream = valuefiles.HashingWriter(base.with_suffix(".pkl"))
    out_of_band = _OutOfBand(base.with_suffix(".buf"))
    try:
        pickler = _make_pickler(stream, is_definition, out_of_band)
        pickler.dump(value)
        pickler.clear_memo()  # the memo holds every object pickled: let them go now
        buffers_digest = out_of_band.close()
        stored = StoredValue(stream.path, stream.close(), out_of_band.path if out_of_band.sizes else None,
                             buffers_digest, out_of_band.sizes, pickler.modules, out_of_band.numeric)
        if _is_whole_c_array(value, out_of_band.sizes):
            stored.array_digest = (weakref.ref(value), buffers_digest)
    except BaseException:
        stream.abort()
        out_of_band.abort()
        raise
    return stored, pickler.references, pickler.carries_code


def _is_whole_c_array(value, sizes: list[int]) -> bool:
    """A plain numpy array pickled as exactly its own memory, in C order (one buffer)."""
    kind = type(value)
    return (kind.__name__ == "ndarray" and kind.__module__ == "numpy" and len(sizes) == 1
            and value.flags.c_contiguous and value.nbytes == sizes[0])


# struct formats of floating-point data (memoryview.format, after a byte-order mark, "Z" for
# complex): their bytes are numbers, never text
_FLOAT_FORMATS = {"e", "f", "d", "g"}


class _OutOfBand:
    """pickle's buffer_callback: big contiguous buffers are written to one file, in order."""

    def __init__(self, path: Path):
        self.path = path
        self.sizes: list[int] = []
        self.numeric: list[bool] = []
        self._writer: valuefiles.HashingWriter | None = None

    def __call__(self, buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: pickle copies it in band
            return True
        if raw.nbytes < OUT_OF_BAND_MIN:
            return True
        self._writer = self._writer or valuefiles.HashingWriter(self.path)
        self._writer.write(raw)
        self.sizes.append(raw.nbytes)
        self.numeric.append(memoryview(buffer).format.lstrip("@=<>!").lstrip("Z") in _FLOAT_FORMATS)
        return False

    def close(self) -> str:
        if self._writer is None:
            return ""
        digest, self._writer = self._writer.close(), None
        return digest

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
        valuefiles.remove(self.path)


def modules_needed(stored: StoredValue, resolve) -> set[str]:
    """Modules a pickled value imports when loaded, as the pickler recorded them. A small
    value is also loaded once here (`resolve` answers its references), which proves it loads
    and names the value if it does not; a big one is proven by the fresh-process rebuild."""
    if stored.nbytes <= LOAD_CHECK_MAX:
        stored.load(resolve)
    return set(stored.modules)


_SPOOL: list = []  # [folder, the pid that made it]


def _spool() -> Path:
    """This process's folder for pickled values: `vj-values-<pid>-*` in the temp directory, so
    a killed kernel's folder is swept by the next process (worker/scratch.py), and on the same
    file system as the temporary packages, which then take the files by hard link."""
    if not _SPOOL or _SPOOL[1] != os.getpid() or not _SPOOL[0].is_dir():  # a forked child: its own
        _SPOOL[:] = [Path(tempfile.mkdtemp(prefix=f"vj-values-{os.getpid()}-")), os.getpid()]
        atexit.register(shutil.rmtree, str(_SPOOL[0]), True)
    return _SPOOL[0]


def describe(value) -> str:
    """A short human description: 'StandardScaler (sklearn.preprocessing._data)'."""
    kind = type(value)
    if isinstance(value, types.ModuleType):
        return f"module {value.__name__}"
    return f"{kind.__qualname__} ({kind.__module__})" if kind.__module__ != "builtins" else kind.__name__
