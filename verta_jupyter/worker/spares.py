"""A clean worker kept ready, so that starting one (the rebuild proof, a panel) is a message.

Starting `python -I` and importing the worker costs 50-150 ms; users re-run `%%verta_model`
all day. So one spare worker per configuration (interpreter and limits) is started ahead of
need: when the extension loads, and again each time one is taken. A spare has run nothing but
the worker's own imports (it is a fresh interpreter started from this process, never a fork of
the notebook), and it learns its package only from its first message, after which it verifies
the package, imports model.py and builds the model exactly as a worker started on demand does.
So the proof is as strong as ever: a process that never saw the notebook.

A spare whose interpreter died, or whose environment no longer matches ours (the notebook
changed os.environ since), is never used: it is stopped and a new process is started.
"""
from __future__ import annotations

import atexit
import threading

from .process import WorkerProcess

_lock = threading.Lock()
_ready: list[WorkerProcess] = []


def take(python: str, memory_limit: int | None, message_limit: int | None) -> WorkerProcess:
    """A worker for these settings, not yet assigned a package: a ready spare when one matches,
    else a new process; either way another spare is started in the background."""
    worker = None
    with _lock:
        for candidate in list(_ready):
            if candidate.matches(python, memory_limit, message_limit):
                _ready.remove(candidate)
                worker = candidate
                break
    if worker is None:
        worker = WorkerProcess(python, memory_limit=memory_limit, message_limit=message_limit)
    prime(python, memory_limit, message_limit, background=True)
    return worker


def prime(python: str, memory_limit: int | None, message_limit: int | None, *,
          background: bool = False) -> None:
    """Have a spare ready for these settings (a stale one is replaced). With `background`, the
    process is started from a thread so the caller does not wait for it."""
    if background:
        threading.Thread(target=prime, args=(python, memory_limit, message_limit),
                         name="vj-spare-worker", daemon=True).start()
        return
    with _lock:
        stale = [w for w in _ready if w.python == python and w.memory_limit == memory_limit
                 and w.message_limit == message_limit]
        if any(w.matches(python, memory_limit, message_limit) for w in stale):
            return
        for worker in stale:
            _ready.remove(worker)
    for worker in stale:
        worker.stop()
    try:
        fresh = WorkerProcess(python, memory_limit=memory_limit, message_limit=message_limit)
    except OSError:  # no such interpreter: the caller's own start will say so clearly
        return
    with _lock:
        _ready.append(fresh)


def ready_pids() -> list[int]:
    """Process ids of the spares waiting right now (for tests and diagnostics)."""
    with _lock:
        return [w.popen.pid for w in _ready]


def stop_all() -> None:
    """Stop every spare (at exit; also useful to release memory in a long session)."""
    with _lock:
        waiting = list(_ready)
        _ready.clear()
    for worker in waiting:
        worker.stop()


atexit.register(stop_all)
