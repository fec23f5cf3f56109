"""Content-addressed blob files for `LocalStore`: blobs/<2 hex>/<64 hex>, named by sha256.

A blob is written to tmp/ while it is hashed, fsynced, then renamed into place and its folder
fsynced, so a blob file that exists is always complete (a crash leaves at most a stray temp
file, which `check()` reports as a harmless note). Identical content is stored once. Bytes are
streamed in chunks by the kernel; the hash runs in a second thread on the chunks already
written, because sha256 is the bottleneck and hashlib releases the GIL.
"""
from __future__ import annotations

import errno
import hashlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

from ....errors import StoreError
from ..base import Progress

CHUNK = 32 << 20  # bytes per sendfile call: few calls, few thread hand-offs
READ_BACK = 8 << 20  # the one read-back buffer: memory stays flat whatever the file size
_FADVISE = hasattr(os, "posix_fadvise")


class BlobFiles:
    """The blobs/ and tmp/ folders of a local store."""

    def __init__(self, root: Path):
        self.dir = root / "blobs"
        self.tmp = root / "tmp"

    def path(self, hexdigest: str) -> Path:
        return self.dir / hexdigest[:2] / hexdigest

    def exists(self, hexdigest: str) -> bool:
        return self.path(hexdigest).is_file()

    def put(self, src: Path, progress: Progress | None = None) -> tuple[str, int]:
        """Store the file at `src`; return (hex sha256, size). Idempotent for equal content."""
        # a unique name opened with the default mode (mkstemp's 0600 would hide blobs from a
        # group sharing the store)
        tmp_name = str(self.tmp / f"put-{uuid.uuid4().hex}")
        fd = os.open(tmp_name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            try:
                hexdigest, size = _copy_hashing(src, fd, progress)
                os.fsync(fd)
            finally:
                os.close(fd)
            final = self.path(hexdigest)
            if final.is_file():
                os.unlink(tmp_name)  # deduplicated: the same bytes are already stored
            else:
                final.parent.mkdir(exist_ok=True)
                os.replace(tmp_name, final)
                _fsync_dir(final.parent)
            return hexdigest, size
        except BaseException:
            _unlink_quietly(tmp_name)
            raise

    def copy_out(self, hexdigest: str, dest: Path, progress: Progress | None = None) -> None:
        """Copy a blob to `dest` (which must not exist), verifying its digest on the way."""
        src = self.path(hexdigest)
        if not src.is_file():
            raise StoreError(f"blob {hexdigest[:12]} is missing from {self.dir}; "
                             "run `verta-jupyter store check` on the store")
        fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)  # read back to verify
        try:
            got, _ = _copy_hashing(src, fd, progress)
        finally:
            os.close(fd)
        if got != hexdigest:
            os.unlink(dest)
            raise StoreError(f"blob {hexdigest[:12]} in {self.dir} is corrupt (its bytes hash to "
                             f"{got[:12]}); run `verta-jupyter store check` on the store")

    def verify(self, hexdigest: str, size: int | None = None) -> str | None:
        """None if the blob is present and intact, else what is wrong."""
        path = self.path(hexdigest)
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
        """Hex names of every stored blob."""
        if self.dir.is_dir():
            for sub in self.dir.iterdir():
                if sub.is_dir():
                    yield from (p.name for p in sub.iterdir())

    def stray_temp_files(self) -> list[Path]:
        return sorted(self.tmp.iterdir()) if self.tmp.is_dir() else []


def _copy_hashing(src: Path, out_fd: int, progress: Progress | None) -> tuple[str, int]:
    """Copy `src` to `out_fd` and sha256 the bytes as written to `out_fd` (so a source that
    changes meanwhile cannot give a blob a wrong name). The kernel copies (sendfile, as
    shutil.copyfile does) while a second thread hashes the chunks already copied, reading them
    back from the page cache: sha256 is the slowest part and hashlib releases the GIL. Once
    hashed, a chunk's writeback starts (fadvise), so the final fsync has little left to do and
    a large blob does not crowd the page cache."""
    h = hashlib.sha256()
    buffer = bytearray(READ_BACK)

    def hash_range(offset: int, n: int) -> None:
        end = offset + n
        while offset < end:
            view = memoryview(buffer)[:min(READ_BACK, end - offset)]
            got = os.preadv(out_fd, [view], offset)
            if got != len(view):
                raise StoreError(f"short read-back while storing {src} ({got} of {len(view)} bytes)")
            h.update(view)
            offset += got
        if _FADVISE:
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
    """Copy up to CHUNK bytes at `offset` in the kernel; fall back to read+write where
    sendfile is not supported."""
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass
