"""Validation warnings through Python's `warnings`, so scripts, CI jobs and papermill runs see them.

The magic shows the same findings in its summary, so it runs validation inside
`shown_in_summary()`, and they are not issued a second time. A warning points at the user's own
line (the first frame outside this package), whatever the call depth inside it.
"""
from __future__ import annotations

import inspect
import os
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import Problem, VertaWarning

__all__ = ["warn_problems", "shown_in_summary"]

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent) + os.sep
_SHOWN_ELSEWHERE: ContextVar[bool] = ContextVar("verta_jupyter_warnings_shown_elsewhere", default=False)


@contextmanager
def shown_in_summary() -> Iterator[None]:
    """Inside the block, validation warnings are not issued: the caller shows them itself."""
    token = _SHOWN_ELSEWHERE.set(True)
    try:
        yield
    finally:
        _SHOWN_ELSEWHERE.reset(token)


def warn_problems(problems: Iterable[Problem]) -> None:
    """`warnings.warn` a VertaWarning subclass (carrying the code) for each warning problem.

    Nothing is issued when there is an error: the error (a ValidationError from log_model) is
    the news, and under `-W error` a warning raised first would hide it.
    """
    problems = list(problems)
    if _SHOWN_ELSEWHERE.get() or any(p.is_error for p in problems):
        return
    level = _user_stacklevel()
    for found in problems:
        if not found.is_error:
            warnings.warn(VertaWarning.for_problem(found), stacklevel=level)


def _user_stacklevel() -> int:
    """warnings.warn's stacklevel for the first caller outside verta_jupyter (1 when frames are
    not introspectable, e.g. on interpreters without frame support)."""
    here = inspect.currentframe()
    frame, level = (here.f_back if here is not None else None), 1  # 1 = warn_problems itself
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level if frame is not None else 1
