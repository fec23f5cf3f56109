"""The engine behind `%%verta_model`: execute the cell, pick the class, validate, log.

`ModelCell` takes a plain namespace, the parsed `Options` and an `execute` callable, so it runs
without IPython (the magic in `magic.py` is the IPython adapter: arguments, display, panels).
Model problems are `ValidationError`s naming the identifier and the check code, with remedies in
the magic's words (`--allow-secrets`, not `allow_secrets=True`), and nothing is logged. A
re-run cell replaces the model that cell logged, without `--overwrite` (see `reruns`).
"""
from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .capture.cells import top_level_classes
from .catalog import in_context, problem
from .errors import AlreadyExistsError, ValidationError, VertaError
from .package.format import MISSING
from .reruns import CellLog, already_logged_message, model_record, run_target

__all__ = ["BadArguments", "ModelCell", "Options", "Outcome", "parse_sample"]

_HOW_TO_MAKE_A_RUN = ("create one first: `from verta_jupyter import Client; run = Client()"
                      ".set_experiment_run(\"my-run\")`, then re-run this cell (or pass --run NAME, "
                      "or --no-log to validate only)")


class BadArguments(ValueError):
    """A flag the engine cannot use; the magic turns it into IPython's UsageError."""


@dataclass
class Options:
    """The magic's flags, parsed."""

    run: str | None = None
    artifacts: list[str] = field(default_factory=list)
    sample: Any = MISSING
    class_name: str | None = None
    log: bool = True
    panel: bool = True
    overwrite: bool = False
    allow_secrets: bool = False
    proof: str = "process"
    cell_key: str | None = None  # who "this cell" is, for re-runs (see CellLog)


@dataclass
class Outcome:
    """What the magic did: the class, its report, where it was logged, how long it took."""

    cls: type
    report: Any  # ValidationReport
    run: Any = None
    logged_to: str = ""
    seconds: float = 0.0
    cell_seconds: float = 0.0
    artifacts: dict = field(default_factory=dict)  # key -> local path (for the panel)
    replaced: str = ""  # "replaced the model this cell logged at 10:42:07", or ""
    logged: Any = None  # what log_model returned (a LoggedModel for our own runs)


def parse_sample(text: str, namespace: dict) -> Any:
    """`--sample` text: JSON if it is JSON, else a Python expression evaluated in `namespace`
    (then converted with `to_json_compatible`, so `--sample df.head(3)` sends records)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        value = eval(compile(text, "<--sample>", "eval"), namespace)  # the user's own expression
    except Exception as exc:
        raise BadArguments(f"--sample {text!r} is neither JSON nor a Python expression that "
                           f"evaluates in the notebook ({type(exc).__name__}: {exc}). Quote JSON "
                           "like --sample '{\"x\": 1}' or name a variable: --sample my_sample") from None
    from .jsonify.output import to_json_compatible
    from .errors import JsonConversionError

    try:
        return to_json_compatible(value, root="sample")
    except JsonConversionError as exc:
        raise ValidationError(problems=[problem(
            "VJ303", f"the --sample expression {text!r} is not JSON: {exc.path} is a {exc.type_name}",
            name=text)]) from None


class ModelCell:
    """The engine behind `%%verta_model`: execute the cell, pick the class, validate, log."""

    def __init__(self, namespace: dict, options: Options,
                 execute: Callable[[str], str] | None = None, cell_log: CellLog | None = None):
        self.ns, self.options = namespace, options
        self.execute = execute or self._exec
        self.cell_log = cell_log if cell_log is not None else CellLog()

    def _exec(self, cell: str) -> str:
        exec(compile(cell, "<verta_model cell>", "exec"), self.ns)
        return cell

    def run(self, cell: str) -> Outcome:
        __tracebackhide__ = True  # a failing cell body shows the user's frames, not ours
        started = time.perf_counter()
        source = self.execute(cell)  # the text as compiled: its line numbers are the cell's
        cell_seconds = time.perf_counter() - started
        try:
            outcome = self._capture_and_log(source)
        except ValidationError as exc:
            raise _in_magic_words(exc) from None
        outcome.cell_seconds = cell_seconds
        outcome.seconds = time.perf_counter() - started - cell_seconds
        _reword(outcome.report)
        return outcome

    def _capture_and_log(self, source: str) -> Outcome:
        cls = self.pick_class(source)
        o = self.options
        run = self.find_run(required=o.log) if (o.log or o.run or o.artifacts) else None
        if not o.log:
            paths = self.artifact_paths(run)
            return Outcome(cls, self.validate_only(cls, paths, source), artifacts=paths)
        return self.log(cls, run, source)

    # -- which class
    def pick_class(self, cell: str) -> type:
        name = self.options.class_name
        if name:
            value = self.ns.get(name)
            if not isinstance(value, type):
                raise ValidationError(problems=[problem(
                    "VJ101", f"--class {name}: no class named '{name}' is defined in the notebook",
                    name=name, remedy=f"Define `class {name}` in this cell, or fix the name.")])
            return value
        classes = [n for n in top_level_classes(cell) if isinstance(self.ns.get(n), type)]
        with_predict = [n for n in classes if hasattr(self.ns[n], "predict")]
        if len(with_predict) == 1 or (len(classes) == 1 and not with_predict):
            return self.ns[(with_predict or classes)[0]]
        if len(with_predict) > 1:
            names = ", ".join(with_predict)
            raise ValidationError(problems=[problem(
                "VJ102", f"the cell defines several model classes ({names})", name=with_predict[0],
                remedy=f"Name the one to log: `%%verta_model --class {with_predict[0]}`.")])
        what = f"classes {', '.join(classes)} but none has a predict method" if classes else "no class"
        raise ValidationError(problems=[problem("VJ101", f"the cell defines {what}",
                                                name=classes[0] if classes else None)])

    # -- which run
    def find_run(self, required: bool = True):
        name = self.options.run
        if name:
            if name not in self.ns:
                raise BadArguments(f"--run {name}: there is no variable '{name}' in the notebook; "
                                   + _HOW_TO_MAKE_A_RUN)
            run = self.ns[name]
            if not callable(getattr(run, "log_model", None)):
                raise BadArguments(f"--run {name}: '{name}' is a {type(run).__name__}, which has no "
                                   "log_model method; pass an experiment run or a model version")
            return run
        from .tracking.client import current_run

        run = current_run()
        if run is None and required:
            raise BadArguments("no run to log the model to: " + _HOW_TO_MAKE_A_RUN)
        return run

    # -- validate and log
    def validate_only(self, cls: type, paths: dict, cell: str):
        from .validation.validate import prepare_model

        return prepare_model(cls, namespace=self.ns, cell_source=cell,
                             artifacts=paths, sample_input=self.options.sample,
                             allow_secrets=self.options.allow_secrets, proof=self.options.proof).report

    def artifact_paths(self, run) -> dict[str, Any]:
        """key -> local path from the run (None for a key it does not have: VJ301)."""
        keys = self.options.artifacts
        fetch = getattr(run, "fetch_artifacts", None)
        if not keys or fetch is None:
            return {k: None for k in keys}
        paths: dict[str, Any] = {}
        for key in keys:
            try:
                paths[key] = fetch([key])[key]
            except (VertaError, KeyError, LookupError):
                paths[key] = None
        return paths

    def log(self, cls: type, run, cell: str) -> Outcome:
        from .validation.validate import prepare_model

        o = self.options
        target = run_target(run)
        mine = self.cell_log.get(o.cell_key, target, run)  # what this cell logged here before
        current = model_record(run) if target is not None else None
        replaces_own = mine is not None and current == mine.record
        kwargs = dict(artifacts=o.artifacts or None, sample_input=o.sample,
                      overwrite=o.overwrite or replaces_own,
                      namespace=self.ns, cell_source=cell, allow_secrets=o.allow_secrets,
                      proof=o.proof)
        accepted = _accepted(run.log_model, kwargs)
        if "allow_secrets" not in accepted and o.allow_secrets:
            raise BadArguments(f"--allow-secrets: {type(run).__name__}.log_model cannot take it")
        if o.proof != "process" and "proof" not in accepted and "namespace" in accepted:
            raise BadArguments(f"--proof {o.proof}: {type(run).__name__}.log_model cannot take it")
        report = None
        if "namespace" not in accepted:  # a foreign log_model: validate here, before it logs
            report = prepare_model(cls, namespace=self.ns, cell_source=cell,
                                   artifacts=self.artifact_paths(run), sample_input=o.sample,
                                   allow_secrets=o.allow_secrets, proof=o.proof).report
        if o.sample is MISSING:
            accepted.pop("sample_input", None)
        try:
            result = run.log_model(cls, **accepted)
        except AlreadyExistsError as exc:
            raise AlreadyExistsError(already_logged_message(mine, _describe_run(run)),
                                     exc.problems) from None
        # our log_model returns a LoggedModel whose report is the validation it ran
        report = getattr(result, "report", None) or report
        self.cell_log.remember(o.cell_key, target, model_record(run) if target else None, run)
        replaced = (f"replaced the model this cell logged at {mine.at}" if replaces_own
                    else "replaced the run's previous model (--overwrite)" if current and o.overwrite
                    else "")
        return Outcome(cls, report, run, _describe_run(run), replaced=replaced, logged=result)


def _accepted(fn: Callable, kwargs: dict) -> dict:
    """The keyword arguments `fn` can take (all of them if it has **kwargs)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return dict(kwargs)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}


def _in_magic_words(exc: ValidationError) -> ValidationError:
    """`exc` with every catalog remedy in the magic's words (`--sample`, `--allow-secrets`)."""
    problems = [in_context(p, "magic") for p in exc.problems]
    message = str(exc)
    for old, new in zip(exc.problems, problems):
        if old.remedy != new.remedy:
            message = message.replace(old.remedy, new.remedy)
    _reword(exc.report)
    return ValidationError(message, problems, report=exc.report)


def _reword(report) -> None:
    """The report's problems (the summary lists them) with remedies in the magic's words."""
    found = getattr(report, "problems", None)
    if isinstance(found, list):
        found[:] = [in_context(p, "magic") for p in found]


def _describe_run(run) -> str:
    name, rid = getattr(run, "name", None), getattr(run, "id", None)
    kind = type(run).__name__
    label = f"{kind} '{name}'" if name else kind
    if rid is not None:
        label += f" (id {rid})"
    store = getattr(getattr(run, "_store", None), "location", None) or getattr(run, "store_location", None)
    return f"{label} in {store}" if store else label
