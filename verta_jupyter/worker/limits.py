"""How much a worker may take (memory, message size) and how the limit is enforced here.

Memory: `VERTA_JUPYTER_WORKER_MEMORY` or `WorkerClient(memory_limit=...)`: a size ("4GiB",
"512MiB"), a share of physical memory ("50%"), or "off"; the default is 75% of physical
memory, so a runaway model is stopped before the system's OOM killer picks a victim (maybe
the kernel). Enforcement is chosen by capability:
- Linux: `setrlimit(RLIMIT_DATA)` in the worker (kernel >= 4.7 counts every private writable
  mapping, so it is the memory the model really takes). Not RLIMIT_AS: that counts reserved
  address space too, which CUDA, jemalloc and BLAS thread pools reserve by the gigabyte
  without using it. Older kernels get RLIMIT_AS. Allocation then fails with MemoryError.
- elsewhere (macOS ignores these limits, Windows has none), or with VERTA_JUPYTER_PORTABLE=1:
  a watchdog thread in the kernel samples the worker's resident memory (children included)
  with psutil and stops it past the limit. (Without psutil, a dependency only a hand-made
  environment lacks, the limit is not enforced there.)
Messages: `VERTA_JUPYTER_WORKER_MESSAGE_LIMIT` or `WorkerClient(message_limit=...)` caps one
request's or one output's JSON (default 256 MiB); past it the call fails as an input or output
error instead of the kernel or the worker running out of memory on one answer.
"""
from __future__ import annotations

import os
import re
import sys
import threading
from typing import Callable

__all__ = ["portable", "memory_limit", "message_limit", "rlimit_spec", "MemoryWatchdog",
           "psutil_or_none", "ENV_MEMORY", "ENV_MESSAGE", "ENV_PORTABLE"]

ENV_MEMORY = "VERTA_JUPYTER_WORKER_MEMORY"
ENV_MESSAGE = "VERTA_JUPYTER_WORKER_MESSAGE_LIMIT"
ENV_PORTABLE = "VERTA_JUPYTER_PORTABLE"
MiB = 1 << 20
DEFAULT_MEMORY_SHARE = 0.75
DEFAULT_MESSAGE_LIMIT = 256 * MiB
_MESSAGE_MAX = (1 << 32) - (1 << 20)  # the frame header holds 4 bytes of length
_UNITS = {"": None, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": MiB, "mb": MiB,
          "mib": MiB, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40,
          "tib": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z%]*)\s*", re.IGNORECASE)


def portable() -> bool:
    """VERTA_JUPYTER_PORTABLE=1: take the paths that work everywhere, even where a faster
    POSIX-only one exists (so the fallbacks are tested on Linux too)."""
    return os.environ.get(ENV_PORTABLE, "").strip() not in ("", "0")


def memory_limit(value: int | str | None = None) -> int | None:
    """Bytes the worker may use (None: no limit), from `value`, else the environment, else
    the default share of physical memory."""
    if value is None:
        value = os.environ.get(ENV_MEMORY) or f"{DEFAULT_MEMORY_SHARE:.0%}"
        where = ENV_MEMORY
    else:
        where = "memory_limit"
    return _size(value, where, share_of=_physical_memory)


def message_limit(value: int | str | None = None) -> int:
    """Bytes of JSON one request or one output may take."""
    if value is None:
        value = os.environ.get(ENV_MESSAGE) or DEFAULT_MESSAGE_LIMIT
        where = ENV_MESSAGE
    else:
        where = "message_limit"
    size = _size(value, where, share_of=None)
    return _MESSAGE_MAX if size is None else min(size, _MESSAGE_MAX)


def _size(value: int | str, where: str, share_of: Callable[[], int] | None) -> int | None:
    if isinstance(value, bool):
        raise ValueError(f"{where}={value!r}: give a size such as '4GiB', or 'off'")
    if isinstance(value, (int, float)):
        return int(value) if value > 0 else None
    text = str(value).strip().lower()
    if text in ("off", "none", "no", "0", "unlimited"):
        return None
    match = _SIZE.fullmatch(text)
    unit = match and match[2]
    if match and unit == "%" and share_of is not None:
        return int(share_of() * float(match[1]) / 100) or None
    if not match or unit not in _UNITS or _UNITS[unit] is None:
        hint = ", '75%'" if share_of is not None else ""
        raise ValueError(f"{where}={value!r} is not a size: give a number with a unit, such as "
                         f"'4GiB' or '512MiB'{hint}, or 'off' for no limit")
    return int(float(match[1]) * _UNITS[unit]) or None


def psutil_or_none():
    """psutil if it is installed (a dependency; a hand-made environment may lack it)."""
    try:
        import psutil
    except ImportError:
        return None
    return psutil


def _physical_memory() -> int:
    psutil = psutil_or_none()
    if psutil is not None:
        return psutil.virtual_memory().total
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # Windows without psutil: no share to take
        return 0


def rlimit_spec(limit: int | None) -> str:
    """`KIND:BYTES` for the worker's --rlimit where setrlimit enforces memory here, else ''
    (then MemoryWatchdog does the job)."""
    if limit is None or portable() or not sys.platform.startswith("linux"):
        return ""
    try:
        release = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    except ValueError:
        release = (0, 0)
    return f"{'data' if release >= (4, 7) else 'as'}:{limit}"


class MemoryWatchdog:
    """Samples a worker's resident memory (its children too) and calls `stop` past `limit`.

    The portable enforcement: psutil works on Linux, macOS and Windows. A sample every 50 ms
    (children every 0.5 s: listing them walks the process table) bounds the overshoot to what
    the model allocates in that time."""

    INTERVAL = 0.05

    def __init__(self, pid: int, limit: int, stop: Callable[[], None]):
        import psutil

        self.limit, self.peak, self.exceeded = limit, 0, False
        try:
            self._process: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:  # already gone: the client sees that on its own
            self._process = None
        self._stop, self._done = stop, threading.Event()
        self._thread = threading.Thread(target=self._watch, name="vj-worker-memory", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        import psutil

        children: list = []
        tick = 0
        while self._process is not None and not self._done.wait(self.INTERVAL):
            try:
                if tick % 10 == 0:
                    children = self._process.children(recursive=True)
                tick += 1
                used = self._process.memory_info().rss + sum(_rss(c) for c in children)
            except psutil.Error:
                return  # the worker is gone
            self.peak = max(self.peak, used)
            if used > self.limit:
                self.exceeded = True
                self._stop()
                return

    def close(self) -> None:
        self._done.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)


def _rss(process) -> int:
    import psutil

    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0
