"""Progress bars for long transfers (a large artifact or model), in notebooks and terminals.

`tqdm.auto` picks a widget bar in a notebook and a text bar in a terminal. Small transfers show
nothing: a bar that flashes for a few milliseconds is noise.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

#: Transfers smaller than this show no bar (env VERTA_JUPYTER_PROGRESS_MIN_BYTES overrides).
MIN_BYTES = 64 << 20


def total_size(path: Path) -> int:
    """Bytes in a file, or in every file under a directory."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


@contextmanager
def transfer_progress(total: int, description: str) -> Iterator[Callable[[int], None] | None]:
    """Yield a callback taking byte counts (or None when the transfer is too small to show)."""
    threshold = int(os.environ.get("VERTA_JUPYTER_PROGRESS_MIN_BYTES", MIN_BYTES))
    if total < threshold:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
               leave=False, mininterval=0.2)
    try:
        yield bar.update
    finally:
        bar.close()
