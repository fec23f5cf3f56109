"""One exception root for everything verta_jupyter raises, and the `Problem` record.

Every problem the tool can find is a `Problem`: a stable code (see `verta_jupyter.catalog`),
a one-line message that names the user's own identifier and where it is used, and one remedy.
Errors carry their problems, so `str(exc)` is the message a notebook user reads and
`exc.problems` is what code and tests inspect.
"""
from __future__ import annotations

import enum
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
    """Warnings verta_jupyter emits; `code` is the catalog code, `problem` the whole finding.

    Issued through `warnings.warn` by `validate` and `run.log_model`, so scripts, CI jobs and
    papermill runs see them. To fail on them: pytest's `filterwarnings = error::verta_jupyter.
    errors.VertaWarning`, `warnings.simplefilter("error", VertaWarning)`, or `python -W
    error::UserWarning` (Python reads `-W` before it can import our class, so naming it there is
    silently ignored). Filter one kind by its subclass, e.g. `simplefilter("ignore", NoSampleWarning)`.
    """

    code = ""

    def __init__(self, message: str = "", problem: Problem | None = None):
        super().__init__(message or (str(problem) if problem is not None else ""))
        self.problem = problem
        if problem is not None:
            self.code = problem.code

    @staticmethod
    def for_problem(problem: Problem) -> VertaWarning:
        """The warning for a catalog warning `problem`: its code's subclass, else VertaWarning."""
        kind = next((k for k in VertaWarning.__subclasses__() if k.code == problem.code), VertaWarning)
        return kind(str(problem), problem)


class DynamicLookupWarning(VertaWarning):
    """VJ206: `eval`, `exec`, `globals()`: names looked up at run time are not captured."""

    code = "VJ206"


class MutatedGlobalWarning(VertaWarning):
    """VJ207: a `global` statement changes notebook state the deployed model will not share."""

    code = "VJ207"


class CapturedByValueWarning(VertaWarning):
    """VJ208: a notebook value was frozen at capture time."""

    code = "VJ208"


class SecretScanIncompleteWarning(VertaWarning):
    """VJ209: a captured value was too large to check for secrets to the end."""

    code = "VJ209"


class NoSampleWarning(VertaWarning):
    """VJ304: no sample input, so predict was never tried before logging."""

    code = "VJ304"


class NoPickleFastPathWarning(VertaWarning):
    """VJ503: cloudpickle cannot dump the class; the package rebuilds from source only."""

    code = "VJ503"


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


class CellSyntaxError(VertaError, ValueError):
    """A `%%verta_model` cell's body does not parse; shown as IPython shows a plain cell's.

    Not a `SyntaxError` subclass on purpose: IPython prints a SyntaxError raised while code runs
    with every frame that led to it (the magic's and the tokenizer's). `rendered` is IPython's
    own short form ("Cell In[4], line 3 ... SyntaxError: invalid syntax"); `error_type`, `msg`,
    `lineno` (the cell's own line) and `offset` are those of the original, chained as the cause.
    """

    def __init__(self, message: str = "", *, error_type: str = "SyntaxError", msg: str = "",
                 lineno: int | None = None, offset: int | None = None, text: str | None = None,
                 filename: str | None = None, rendered: list[str] | None = None):
        super().__init__(message)
        self.error_type, self.msg, self.lineno, self.offset = error_type, msg, lineno, offset
        self.text, self.filename, self.rendered = text, filename, list(rendered or [])

    def _render_traceback_(self) -> list[str]:
        return self.rendered or [f"{self.error_type}: {self}"]


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


class ErrorKind(str, enum.Enum):
    """Which step of a prediction failed; the worker's replies and the panel share these."""

    INPUT = "input"  # the JSON does not fit predict's annotation
    LOAD = "load"  # the package could not be built (model.py or __init__ raised)
    MODEL = "model"  # predict raised
    OUTPUT = "output"  # predict returned a value JSON cannot carry
    TIMEOUT = "timeout"  # no answer in time: the worker was killed
    CRASH = "crash"  # the worker process died


class PredictError(VertaError, RuntimeError):
    """A prediction failed: the model raised, the worker crashed, or it timed out.

    `kind` says which step failed, `reason` is the model's own one-line error ("KeyError: 'x'"),
    `model_traceback` the traceback trimmed to the model's frames.
    """

    def __init__(self, message: str = "", *, kind: ErrorKind = ErrorKind.MODEL, reason: str = "",
                 model_traceback: str = ""):
        super().__init__(message)
        self.kind, self.reason, self.model_traceback = ErrorKind(kind), reason, model_traceback


class WorkerCrashedError(PredictError):
    """The isolated worker process died during a call; `exit` says how ("killed by signal ...")."""

    def __init__(self, message: str = "", *, exit: str = "", model_traceback: str = ""):
        super().__init__(message, kind=ErrorKind.CRASH, reason=exit, model_traceback=model_traceback)
        self.exit = exit


class WorkerTimeoutError(PredictError, TimeoutError):
    """A call ran past its timeout; the worker was killed."""

    def __init__(self, message: str = "", *, seconds: float = 0.0):
        super().__init__(message, kind=ErrorKind.TIMEOUT,
                         reason=f"no answer within {seconds:g} s (killed)")
        self.seconds = seconds


class JsonConversionError(VertaError, TypeError):
    """A value has no JSON form, or JSON does not fit an annotation.

    `path` is where in the value (`output["scores"][3]`), `type_name` the type involved, `kind`
    whether it was the model's input or its output.
    """

    def __init__(self, message: str = "", problems=(), *, path: str | None = None,
                 type_name: str | None = None, kind: ErrorKind = ErrorKind.OUTPUT,
                 model_traceback: str = ""):
        super().__init__(message, problems)
        self.path, self.type_name, self.kind = path, type_name, ErrorKind(kind)
        self.model_traceback = model_traceback
