"""The sha256 of a file, streamed: packages, stores and caches all name bytes this way."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

CHUNK = 1 << 20  # 1 MiB: large enough for full disk throughput, small enough for memory


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
    """(hex sha256, size in bytes) of the file at `path`, read in chunks; `progress` is called
    with each chunk's length."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest(), size
