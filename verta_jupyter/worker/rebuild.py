"""Validation's rebuild check: the package built and run in a fresh process, as one worker call.

The proof that a package stands alone goes through the same path as the predict panel and a
deployment: `WorkerClient` starts `python -I` in an empty folder (no notebook state), the worker
verifies the package, imports model.py, builds the model and answers the sample. So "it rebuilds
the same" is proven by exactly the code that will serve the model.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import JsonConversionError, PackageError, PredictError, WorkerTimeoutError
from ..package.format import MISSING
from .client import WorkerClient


@dataclass
class RebuildResult:
    """What a fresh process made of a package."""

    ok: bool
    output: object = None
    error: str = ""
    traceback: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    python: str = ""
    loaded_from: str = ""
    fingerprint: dict = field(default_factory=dict)  # path -> digest of the rebuilt objects


def rebuild_in_subprocess(path, *, artifacts=None, sample_input=MISSING, timeout: float = 60.0,
                          python: str | None = None, use_pickle: bool = False) -> RebuildResult:
    """Load the package in a fresh worker process, build the model, predict `sample_input`.

    `artifacts` maps keys to local paths; the output is JSON-compatible, ready to compare with
    the notebook's. `python` picks another interpreter (default: this one).
    """
    started = time.perf_counter()
    client = WorkerClient(Path(path), artifacts, timeout=timeout, load_timeout=timeout,
                          python=python, use_pickle=use_pickle)
    try:
        client.start()
        output = client.predict(sample_input) if sample_input is not MISSING else None
    except (PredictError, JsonConversionError, PackageError) as exc:
        return RebuildResult(ok=False, error=_reason(exc, timeout),
                             traceback=getattr(exc, "model_traceback", ""),
                             notes=client.info.get("notes", []), python=client.info.get("python", ""),
                             seconds=time.perf_counter() - started)
    finally:
        client.close()
    info = client.info
    return RebuildResult(ok=True, output=output, notes=info.get("notes", []),
                         seconds=time.perf_counter() - started, python=info.get("python", ""),
                         loaded_from=info.get("loaded_from", ""), fingerprint=info.get("fingerprint") or {})


def _reason(exc: PredictError | JsonConversionError | PackageError, timeout: float) -> str:
    # The worker's own messages advise panel users; validation states what happened only.
    if isinstance(exc, WorkerTimeoutError):
        return f"the fresh process did not finish within {timeout:g} s (killed)"
    return (exc.reason if isinstance(exc, PredictError) else "") or str(exc)
