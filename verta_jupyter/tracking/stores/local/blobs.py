"""Content-addressed blob files for `LocalStore`: blobs/<2 hex>/<64 hex>, named by sha256.

A blob is written to tmp/ while it is hashed, fsynced, then renamed into place and its folder
fsynced, so a blob file that exists is always complete (a crash leaves at most a stray temp
file, which `check()` reports as a harmless note). Identical content is stored once.

Two copy paths, chosen by capability (like `shutil`, which uses sendfile on Linux only):
- the fast path (Linux): the kernel copies in large chunks (sendfile) while a second thread
  hashes the chunks already written (pread back from the page cache; sha256 is the bottleneck
  and hashlib releases the GIL);
- the portable path (macOS, where sendfile needs a socket; Windows, which has no sendfile,
  pread or preadv): read a chunk, write it, hash the same bytes.
`VERTA_JUPYTER_PORTABLE=1` forces the portable path so the fallback is tested on Linux too.

A third path takes no copy at all: a file this process wrote and hashed in its own temporary
folder (a captured value's file in a temporary package, see package/valuefiles.py) is fsynced
and hard-linked under its digest, when the store is on the same file system. Anything else
(another device, no hard links, portable mode, any other file) is copied as above.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import mmap
import os
import re
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

from ....errors import StoreError
from ....package.valuefiles import link_or_false, trusted_digest
from ..base import Progress

CHUNK = 32 << 20  # bytes per sendfile call: few calls, few thread hand-offs
READ_BACK = 8 << 20  # the one read/read-back buffer: memory stays flat whatever the file size
HEX = re.compile(r"[0-9a-f]{64}")
SMALL_BLOB = 1 << 20  # files up to this size are hashed in memory before anything is written
_PARALLEL_PUTS = 8  # small files: fsyncs overlap; large ones: the disk, not threads, is the limit
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # POSIX only; Windows has no symlinked-path opens here
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_NEW_FILE = os.O_RDWR | os.O_CREAT | os.O_EXCL | _BINARY


def portable_mode() -> bool:
    """True when VERTA_JUPYTER_PORTABLE asks for the portable paths only (CI runs the store
    suites a second time this way)."""
    return os.environ.get("VERTA_JUPYTER_PORTABLE", "").strip() not in ("", "0")


def fast_copy_available() -> bool:
    """The Linux kernel copy path: sendfile between regular files and positional reads.
    Checked at each call (cheap) so the switch and the platform are always honoured."""
    return (sys.platform.startswith("linux") and not portable_mode()
            and all(hasattr(os, name) for name in ("sendfile", "preadv", "pread")))


class BlobFiles:
    """The blobs/ and tmp/ folders of a local store."""

    def __init__(self, root: Path):
        self.dir = root / "blobs"
        self.tmp = root / "tmp"

    def path(self, hexdigest: str) -> Path:
        """Where the blob named `hexdigest` lives; a name that is not 64 lowercase hex digits
        (e.g. "../../x" read from a damaged database) is refused, never joined."""
        if not isinstance(hexdigest, str) or not HEX.fullmatch(hexdigest):
            raise StoreError(f"the blob name {hexdigest!r} recorded in the store {self.dir.parent} "
                             "is not a sha256; the database is damaged: run "
                             "`verta-jupyter store check` on the store")
        return self.dir / hexdigest[:2] / hexdigest

    def exists(self, hexdigest: str) -> bool:
        path = self.path(hexdigest)
        return path.is_file() and not path.is_symlink()

    def put(self, src: Path, progress: Progress | None = None) -> tuple[str, int]:
        """Store the file at `src`; return (hex sha256, size). Idempotent for equal content."""
        stored = self._put_by_link(src)
        if stored is None:
            small = _read_if_small(src)
            if small is None:
                return self._put_copy(src, progress)  # reports progress as it copies
            stored = self._put_bytes(small)
        if progress:
            progress(stored[1])
        return stored

    def _put_copy(self, src: Path, progress: Progress | None) -> tuple[str, int]:
        """Copy and hash the very bytes written (progress is reported as they are)."""
        return self._durable(self._tmp_name("put"), _NEW_FILE,
                             lambda fd: copy_hashing(src, fd, progress))

    def _put_bytes(self, data: bytes) -> tuple[str, int]:
        """A small file, already in memory: hashed first, so bytes the store already holds (most
        of a re-run cell's package) cost no write and no fsync at all."""
        hexdigest = hashlib.sha256(data).hexdigest()
        if not self.exists(hexdigest):
            def write(fd: int) -> tuple[str, int]:
                _write_all(fd, data)
                return hexdigest, len(data)

            self._durable(self._tmp_name("put"), _NEW_FILE, write)
        return hexdigest, len(data)

    def _put_by_link(self, src: Path) -> tuple[str, int] | None:
        """A file this process wrote and hashed in its own temporary folder (a captured value)
        becomes a blob without a copy or a second hash: fsync it, hard-link it under its name.
        None when that is not possible (another file system, no hard links, not such a file):
        the caller copies."""
        hexdigest = trusted_digest(src) if not portable_mode() else None
        if hexdigest is None:
            return None
        size = os.stat(src).st_size
        if not self.exists(hexdigest):
            tmp_name = self._tmp_name("link")
            if not link_or_false(src, Path(tmp_name)):
                return None
            # opened writable: Windows flushes only a writable handle
            self._durable(tmp_name, os.O_RDWR | _BINARY, lambda fd: (hexdigest, size))
        return hexdigest, size

    def _durable(self, tmp_name: str, flags: int, fill) -> tuple[str, int]:
        """Open `tmp_name`, let `fill(fd)` give it its bytes and say (hex sha256, size), fsync
        it so it is durable before it has a blob's name, then name it; on any failure the
        temporary file is removed."""
        try:
            fd = os.open(tmp_name, flags, 0o666)
            try:
                hexdigest, size = fill(fd)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._publish(tmp_name, hexdigest)
            return hexdigest, size
        except BaseException:
            _unlink_quietly(tmp_name)
            raise

    def _tmp_name(self, kind: str) -> str:
        # a unique name opened with the default mode (mkstemp's 0600 would hide blobs from a
        # group sharing the store)
        return str(self.tmp / f"{kind}-{uuid.uuid4().hex}")

    def _publish(self, tmp_name: str, hexdigest: str) -> None:
        """Give a durable temporary file its blob name (or drop it: the same bytes are stored)."""
        final = self.path(hexdigest)
        if self.exists(hexdigest):
            os.unlink(tmp_name)  # deduplicated: the same bytes are already stored
            return
        final.parent.mkdir(exist_ok=True)
        os.replace(tmp_name, final)
        _fsync_dir(final.parent)

    def put_many(self, sources: list[Path], progress: Progress | None = None) -> list[tuple[str, int]]:
        """`put` every file, a few at a time: each blob still gets its own fsync (so each is
        durable before the transaction that names it), but concurrent fsyncs share the file
        system's journal commits, so a package of small files costs about one fsync, not one
        per file."""
        if len(sources) < 2:
            return [self.put(src, progress) for src in sources]
        return list(_put_pool().map(lambda src: self.put(src, progress), sources))

    def copy_out(self, hexdigest: str, dest: Path, progress: Progress | None = None) -> None:
        """Copy a blob to `dest` (which must not exist and is not followed if it is a link),
        verifying its digest on the way."""
        src = self.path(hexdigest)
        if not src.is_file() or src.is_symlink():
            raise StoreError(f"blob {hexdigest[:12]} is missing from {self.dir}; "
                             "run `verta-jupyter store check` on the store")
        fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY, 0o644)
        try:
            got, _ = copy_hashing(src, fd, progress)
        finally:
            os.close(fd)
        if got != hexdigest:
            os.unlink(dest)
            raise StoreError(f"blob {hexdigest[:12]} in {self.dir} is corrupt (its bytes hash to "
                             f"{got[:12]}); run `verta-jupyter store check` on the store")

    def verify(self, hexdigest: str, size: int | None = None) -> str | None:
        """None if the blob is present and intact, else what is wrong."""
        path = self.path(hexdigest)
        if path.is_symlink():
            return "is a symbolic link, not a stored file"
        if not path.is_file():
            return "missing"
        if size is not None and path.stat().st_size != size:
            return f"size {path.stat().st_size} != {size}"
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(READ_BACK):
                h.update(chunk)
        return None if h.hexdigest() == hexdigest else "content does not match its sha256"

    def all(self) -> Iterator[str]:
        """Hex names of every well-formed blob file (see `strays` for everything else)."""
        if self.dir.is_dir():
            for sub in self.dir.iterdir():
                if sub.is_dir() and not sub.is_symlink():
                    yield from (p.name for p in sub.iterdir()
                                if HEX.fullmatch(p.name) and p.name[:2] == sub.name)

    def strays(self) -> list[Path]:
        """Everything under blobs/ that is not a well-formed blob: a misnamed or misplaced file,
        a symbolic link, a folder where a file belongs. Nothing the store writes looks so."""
        found: list[Path] = []
        if not self.dir.is_dir():
            return found
        for sub in sorted(self.dir.iterdir()):
            if sub.is_symlink() or not sub.is_dir() or not re.fullmatch(r"[0-9a-f]{2}", sub.name):
                found.append(sub)
                continue
            for path in sorted(sub.iterdir()):
                if (path.is_symlink() or not path.is_file() or not HEX.fullmatch(path.name)
                        or path.name[:2] != sub.name):
                    found.append(path)
        return found

    def stray_temp_files(self) -> list[Path]:
        return sorted(self.tmp.iterdir()) if self.tmp.is_dir() else []


def copy_hashing(src: Path, out_fd: int, progress: Progress | None) -> tuple[str, int]:
    """Copy `src` to `out_fd` and sha256 the bytes as written to `out_fd` (so a source that
    changes meanwhile cannot give a blob a wrong name); the path is chosen by capability."""
    if fast_copy_available():
        return _copy_hashing_kernel(src, out_fd, progress)
    return _copy_hashing_portable(src, out_fd, progress)


def _copy_hashing_portable(src: Path, out_fd: int, progress: Progress | None) -> tuple[str, int]:
    """Standard library only: read a chunk, write it, hash the very bytes written. One buffer,
    reused (readinto), so memory stays flat whatever the file size."""
    h = hashlib.sha256()
    buffer = memoryview(bytearray(READ_BACK))
    size = 0
    with open(src, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            chunk = buffer[:n]
            _write_all(out_fd, chunk)
            h.update(chunk)
            size += n
            if progress:
                progress(n)
    return h.hexdigest(), size


def _copy_hashing_kernel(src: Path, out_fd: int, progress: Progress | None) -> tuple[str, int]:
    """The kernel copies (sendfile, as shutil.copyfile does on Linux) while a second thread
    hashes the chunks already copied, mapped from the page cache (no read-back copy). Once
    hashed, a chunk's writeback starts (fadvise), so the final fsync has little left to do and
    a large blob does not crowd the page cache."""
    h = hashlib.sha256()
    fadvise = hasattr(os, "posix_fadvise")

    def hash_range(offset: int, n: int) -> None:
        end = offset + n
        # hashed straight from the page cache through a mapping: no read-back copy in this
        # thread, which is the one that sets the pace (sha256 is slower than the copy)
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        with mmap.mmap(out_fd, end - start, offset=start, access=mmap.ACCESS_READ) as mapped:
            with memoryview(mapped) as whole, whole[offset - start:] as copied:
                h.update(copied)
        if fadvise:
            os.posix_fadvise(out_fd, end - n, n, os.POSIX_FADV_DONTNEED)

    src_fd = os.open(src, os.O_RDONLY)
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = []
            size = 0
            while True:
                n = _copy_chunk(src_fd, out_fd, size)
                if not n:
                    break
                pending.append(pool.submit(hash_range, size, n))
                size += n
                if progress:
                    progress(n)
            for future in pending:
                future.result()
    finally:
        os.close(src_fd)
    return h.hexdigest(), size


def _copy_chunk(src_fd: int, out_fd: int, offset: int) -> int:
    """Copy up to CHUNK bytes at `offset` in the kernel; a Linux filesystem that refuses
    sendfile (some FUSE and network mounts) gets the same bytes by pread + write."""
    try:
        return os.sendfile(out_fd, src_fd, offset, CHUNK)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
            raise
    data = os.pread(src_fd, READ_BACK, offset)
    os.lseek(out_fd, offset, os.SEEK_SET)
    _write_all(out_fd, memoryview(data))
    return len(data)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


def _read_if_small(src: Path) -> bytes | None:
    """The bytes of `src` when it is small enough to hold in memory (model.py, manifests), read
    through one handle, so the size seen and the bytes stored cannot disagree."""
    with open(src, "rb") as f:
        if os.fstat(f.fileno()).st_size > SMALL_BLOB:
            return None
        data = f.read(SMALL_BLOB + 1)
    return data if len(data) <= SMALL_BLOB else None


@functools.lru_cache(maxsize=None)
def _put_pool() -> ThreadPoolExecutor:
    """One pool for the process: its threads are started once and then idle, so a small package
    does not pay a thread start per file on every log (2 ms each on a busy 2-core box)."""
    return ThreadPoolExecutor(max_workers=_PARALLEL_PUTS, thread_name_prefix="vj-blob-put")


def _fsync_dir(path: Path) -> None:
    """Make a rename durable. Only where a folder can be opened (POSIX); Windows cannot open
    a folder as a file, and NTFS journals the rename itself."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass
