"""Value files: each captured value written once, hashed while it is written, linked not copied.

A pickled value is two files in a package's `values/` folder (see `format.py`'s table): `<k>.pkl`,
its pickle stream (protocol 5), and `<k>.buf`, the large buffers that stream refers to out of
band (a numpy array's data, a DataFrame's blocks), back to back. model.py reads each buffer
straight from disk into its own bytearray: one copy, and the arrays come back writable.

`HashingWriter` is the one way such a file is written: every byte is hashed on its way to the
file, so nobody reads it back to learn its digest. A file written here is remembered with its
digest (`trusted_digest`), so the package and the local store that take the very same file (a
hard link, in this process's own temporary folders) need not hash it again. The trust lasts
only while the file is provably unchanged: same inode, size and modification time, inside a
folder only this user can write (`tempfile.mkdtemp` makes them 0700).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["HashingWriter", "trusted_digest", "remember", "forget", "place", "in_own_scratch",
           "read_chunks", "SCRATCH_NAME"]

# Temporary folders this package keeps are named `vj-<kind>-<pid>-<random>` (worker/scratch.py
# sweeps those of dead processes); the pattern lives here, at the bottom, so both can read it.
SCRATCH_NAME = re.compile(r"vj-([a-z]+)-(\d+)-[A-Za-z0-9_]+")
_SLICE = 4 << 20  # hash one slice while the next is written: both release the GIL
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_LINK_ERRORS = {errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP,
                errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_trusted: dict[tuple[int, int], tuple[int, int, str]] = {}  # (dev, ino) -> (size, mtime_ns, hex)
_lock = threading.Lock()


class HashingWriter:
    """A binary file that sha256-hashes everything written to it (`write` takes any buffer).

    Large writes are cut into slices: a helper thread hashes one slice while this thread
    writes the next, so a 200 MB buffer costs about the longer of the two, not their sum."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.size = 0
        self._hash = hashlib.sha256()
        # the default mode, as for any blob (a group may share a store); the spool folder itself
        # is 0700, so nobody else reaches the file before it is stored
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY, 0o666)
        except OSError as exc:
            raise _explained(exc, self.path) from exc
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list = []
        self._open = True

    def write(self, data) -> int:
        try:
            return self._write(memoryview(data).cast("B"))
        except OSError as exc:
            raise _explained(exc, self.path) from exc

    def _write(self, view: memoryview) -> int:
        if len(view) < 2 * _SLICE:
            self._drain()
            self._hash.update(view)
            _write_all(self._fd, view)
        else:
            self._pool = self._pool or ThreadPoolExecutor(1, thread_name_prefix="vj-hash")
            for start in range(0, len(view), _SLICE):
                piece = view[start:start + _SLICE]
                self._pending.append(self._pool.submit(self._hash.update, piece))
                _write_all(self._fd, piece)
        self.size += len(view)
        return len(view)

    def _drain(self) -> None:
        for future in self._pending:
            future.result()
        self._pending.clear()

    def _release(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        if self._open:
            self._open = False
            os.close(self._fd)

    def close(self) -> str:
        """Close the file; return its sha256 (hex) and remember it as trusted."""
        try:
            self._drain()
        finally:
            self._release()
        digest = self._hash.hexdigest()
        remember(self.path, digest)
        return digest

    def abort(self) -> None:
        """Close and remove a half-written file (pickling failed part way)."""
        try:
            self._drain()
        except Exception:
            pass
        finally:
            self._release()
            _unlink(self.path)


def _explained(exc: OSError, path: Path) -> OSError:
    """The disk's error, saying which file and what to do (a full temp disk is the usual one)."""
    return type(exc)(exc.errno, f"cannot write the captured value to {path.parent}: "
                     f"{exc.strerror or exc}. Free space there, or point TMPDIR at a larger disk "
                     "before starting Python")


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view):]


def remember(path: Path, hexdigest: str) -> None:
    """Record that the file at `path`, as it is now, has this sha256."""
    st = os.stat(path)
    with _lock:
        _trusted[(st.st_dev, st.st_ino)] = (st.st_size, st.st_mtime_ns, hexdigest)


def forget(path: Path) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    with _lock:
        _trusted.pop((st.st_dev, st.st_ino), None)


def trusted_digest(path: Path) -> str | None:
    """The sha256 this process computed while writing the file at `path`, if the file is
    provably the one written (same inode, size and mtime) and lies in one of this process's
    own temporary folders; else None (the caller hashes it)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or not in_own_scratch(path):
        return None
    with _lock:
        known = _trusted.get((st.st_dev, st.st_ino))
    if known is None or known[:2] != (st.st_size, st.st_mtime_ns):
        return None
    return known[2]


def in_own_scratch(path: str | os.PathLike) -> bool:
    """True when `path` is inside a `vj-<kind>-<this pid>-*` folder of the temp directory."""
    root = Path(tempfile.gettempdir()).resolve()
    try:
        relative = Path(path).resolve().relative_to(root)
    except (ValueError, OSError):
        return False
    match = SCRATCH_NAME.fullmatch(relative.parts[0]) if relative.parts else None
    return bool(match) and int(match[2]) == os.getpid()


def place(src: Path, dest: Path, hexdigest: str) -> None:
    """Put the trusted file `src` at `dest`: a hard link when `dest` is in this process's own
    scratch space and the file system allows one, else a copy (then `dest` is an independent
    file: a user's folder never shares bytes with a store)."""
    if in_own_scratch(dest) and link_or_false(src, dest):
        return
    shutil.copyfile(src, dest)  # sendfile on Linux; a plain read/write loop elsewhere
    if in_own_scratch(dest):
        remember(dest, hexdigest)


def link_or_false(src: Path, dest: Path) -> bool:
    """Hard-link `src` to `dest`; False (nothing done) where the platform or file system has no
    hard links or refuses this one (another device, FAT, some network mounts)."""
    link = getattr(os, "link", None)
    if link is None:
        return False
    try:
        link(src, dest)
    except OSError as exc:
        if exc.errno in _LINK_ERRORS:
            return False
        raise
    return True


def read_chunks(path: Path, size: int = 8 << 20):
    """The file's bytes in chunks of at most `size` (bounded memory whatever the file)."""
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def _unlink(path: Path) -> None:
    forget(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove(path: Path) -> None:
    """Remove a value file this process wrote (forgetting its digest first)."""
    _unlink(path)
