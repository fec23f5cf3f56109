"""One exception root for everything verta_jupyter raises, and the `Problem` record.

Every problem the tool can find is a `Problem`: a stable code (see `verta_jupyter.catalog`),
a one-line message that names the user's own identifier and where it is used, and one remedy.
Errors carry their problems, so `str(exc)` is the message a notebook user reads and
`exc.problems` is what code and tests inspect.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One finding: `code` is stable, `severity` is "error" or "warning"."""

    code: str
    message: str
    remedy: str = ""
    severity: str = "error"
    name: str | None = None  # the user's identifier the problem is about
    where: str | None = None  # "cell line 7, in MyModel.predict"

    def __str__(self) -> str:
        where = f"{self.where}: " if self.where else ""
        message = self.message if self.message.endswith((".", "!", "?")) else self.message + "."
        remedy = f" {self.remedy}" if self.remedy else ""
        return f"[{self.code}] {where}{message}{remedy}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


class VertaWarning(UserWarning):
    """Warnings verta_jupyter emits (the test suite turns them into errors)."""


class VertaError(Exception):
    """Root of every verta_jupyter error."""

    def __init__(self, message: str = "", problems: list[Problem] | tuple[Problem, ...] = ()):
        self.problems = tuple(problems)
        if not message:
            message = "\n".join(str(p) for p in self.problems)
        super().__init__(message)

    @property
    def codes(self) -> list[str]:
        return [p.code for p in self.problems]

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing our internal frames: the user sees the message.
        return [f"{type(self).__name__}: {self}"]


class CaptureError(VertaError, ValueError):
    """The class (or something it uses) cannot be captured into a standalone package."""


class ValidationError(VertaError, ValueError):
    """A model failed validation; `report` holds every finding."""

    def __init__(self, message: str = "", problems=(), report=None):
        super().__init__(message, problems)
        self.report = report


class PackageError(VertaError, OSError):
    """A model package is missing, malformed, tampered with, or cannot be rebuilt."""


class StoreError(VertaError):
    """The store refused or failed an operation."""


class InvalidKeyError(StoreError, ValueError):
    """A key is empty, too long, or has characters a store cannot hold (e.g. `../x`)."""


class InvalidValueError(StoreError, TypeError):
    """A value has the wrong type for its field (e.g. a list logged as a metric)."""


class NotFoundError(StoreError, LookupError):
    """A project, experiment, run, artifact or model does not exist."""


class AlreadyExistsError(StoreError):
    """Something is already logged under that key and `overwrite=True` was not given."""


class PredictError(VertaError, RuntimeError):
    """A prediction failed: the model raised, the worker crashed, or it timed out."""


class WorkerCrashedError(PredictError):
    """The isolated worker process died during a call."""


class WorkerTimeoutError(PredictError, TimeoutError):
    """A call ran past its timeout; the worker was killed."""


class JsonConversionError(VertaError, TypeError):
    """A value has no JSON form; the message names its type and its path in the output."""
