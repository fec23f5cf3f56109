"""`%%verta_model`: run the cell, then capture -> validate -> log -> show a summary and a panel.

The IPython side (`VertaMagics`) only parses arguments and displays results; `ModelCell` is the
engine and takes a plain namespace and an `execute` callable, so it runs without IPython.
User mistakes in flags are IPython's own `UsageError` (printed without a traceback); model
problems are `ValidationError`s naming the identifier and the check code, and nothing is logged.
Remedies are in the magic's words (`--allow-secrets`, not `allow_secrets=True`).

Re-running a cell replaces the model that cell logged, without `--overwrite` (see `reruns`).
"""
from __future__ import annotations

import inspect
import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from .capture.cells import top_level_classes
from .catalog import in_context, problem
from .errors import AlreadyExistsError, CellSyntaxError, ValidationError, VertaError
from .package.format import MISSING
from .reruns import CellLog, already_logged_message, cell_key, model_record, run_target
from .validation.warn import shown_in_summary

__all__ = ["register", "unregister", "VertaMagics", "ModelCell", "Options", "Outcome", "parse_sample"]

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
        mine = self.cell_log.get(o.cell_key, target)  # what this cell logged to this run before
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
        self.cell_log.remember(o.cell_key, target, model_record(run) if target else None)
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


# -- the IPython adapter ---------------------------------------------------------------------

@magics_class
class VertaMagics(Magics):
    """The `%%verta_model` cell magic."""

    last_panel = None  # the PredictPanel shown by the latest successful cell
    last_outcome = None  # the latest successful cell's Outcome (class, report, run)

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self.cell_log = CellLog()  # what each cell logged in this kernel (re-runs replace it)
        self._panels: dict[str, Any] = {}  # cell key -> the panel that cell shows

    @magic_arguments()
    @argument("--run", metavar="NAME", help="variable holding the run (or model version) to log to; "
              "default: the run most recently returned by set_experiment_run")
    @argument("--artifacts", metavar="K1,K2", default="", help="artifact keys (logged with "
              "run.log_artifact) that __init__ receives as artifacts={key: path}")
    @argument("--sample", metavar="VALUE", help="sample input: JSON, or a Python expression "
              "evaluated in the notebook; predict is tried on it before logging")
    @argument("--class", dest="class_name", metavar="NAME", help="the class to log when the cell "
              "defines several classes with a predict method")
    @argument("--no-log", action="store_true", help="validate only; log nothing")
    @argument("--no-panel", action="store_true", help="do not show the predict panel")
    @argument("--overwrite", action="store_true", help="replace a model that something else "
              "(another cell, the Python API, an earlier kernel) logged to the run; re-running "
              "this cell replaces its own model without it")
    @argument("--allow-secrets", action="store_true", help="capture globals that look like "
              "secrets (only when they are not secret)")
    @argument("--proof", choices=("process", "env"), default="process", help="env: prove the "
              "package in a clean environment holding only its requirements.txt (cached)")
    @no_var_expand
    @cell_magic
    def verta_model(self, line: str, cell: str):
        """Run the cell, then capture, validate and log the model class it defines.

        The cell runs like any cell first. Then the class is captured as standalone source,
        checked (interface, names, secrets, sample predict, JSON output, rebuild in a fresh
        process), logged to the run, and a summary and a predict panel are shown. Any problem
        fails the cell with its check code, and nothing is logged. Re-running the cell (edited
        or not) replaces the model it logged before; a model logged by anything else needs
        --overwrite.
        """
        __tracebackhide__ = True
        try:
            options = self._options(self._parse(line))
            options.cell_key = cell_key(self._cell_id(), f"%%verta_model {line}\n{cell}")
            with shown_in_summary():  # its warnings are in the summary: not issued twice
                outcome = ModelCell(self.shell.user_ns, options, execute=self._run_body,
                                    cell_log=self.cell_log).run(cell)
        except BadArguments as exc:
            raise UsageError(str(exc)) from None
        self.last_outcome = outcome
        self._show(outcome, options)

    def _execution(self):
        """IPython's record of the cell being run (its id, its prompt number), if any."""
        return getattr(getattr(self.shell, "displayhook", None), "exec_result", None)

    def _cell_id(self) -> str | None:
        # ipykernel passes the front end's cellId to run_cell (JupyterLab, Notebook 7, VS Code)
        return getattr(getattr(self._execution(), "info", None), "cell_id", None) or None

    def _prompt_number(self) -> int:
        # while a cell runs, shell.execution_count is already the next prompt's number
        count = getattr(self._execution(), "execution_count", None)
        return count if isinstance(count, int) else self.shell.execution_count

    def _parse(self, line: str):
        """argparse over shell-style words: quotes removed, as a shell would (`--sample '{"x": 1}'`)."""
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise BadArguments(f"cannot read the flags {line.strip()!r}: {exc}") from None
        return self.verta_model.parser.parse_args(argv)  # its errors are UsageError

    def _options(self, args) -> Options:
        artifacts = [k.strip() for k in (args.artifacts or "").split(",") if k.strip()]
        if args.artifacts and not artifacts:
            raise BadArguments(f"--artifacts {args.artifacts!r}: give keys separated by commas, e.g. --artifacts vocab,weights")
        if args.class_name is not None and not args.class_name.isidentifier():
            raise BadArguments(f"--class {args.class_name!r}: give the class name, e.g. --class MyModel")
        if args.run is not None and not args.run.isidentifier():
            raise BadArguments(f"--run {args.run!r}: give a variable name, e.g. --run run")
        sample = MISSING if args.sample is None else parse_sample(args.sample, self.shell.user_ns)
        return Options(run=args.run, artifacts=artifacts, sample=sample, class_name=args.class_name,
                       log=not args.no_log, panel=not args.no_panel, overwrite=args.overwrite,
                       allow_secrets=args.allow_secrets, proof=args.proof)

    def _run_body(self, cell: str) -> str:
        """Run the body as IPython runs a cell (transforms, cached source, real cell filename).
        Leading newlines keep line numbers equal to the cell's, whose line 1 is the magic."""
        __tracebackhide__ = True
        shell = self.shell
        blank = 0
        for text in cell.splitlines():
            if text.strip():
                break
            blank += 1
        try:
            aligned = "\n" * (1 + blank) + shell.transform_cell(cell)
        except SyntaxError:  # the tokenizer's error says "<tokenize>" and a body line: let the
            aligned = "\n" + cell  # compiler report it on the cell's own line instead
        filename = shell.compile.cache(aligned, self._prompt_number(), raw_code=aligned)
        try:
            tree = shell.compile.ast_parse(aligned, filename=filename)
        except SyntaxError as exc:
            raise self._cell_syntax_error(exc, filename) from exc
        tree = shell.transform_ast(tree)
        with shell.builtin_trap:
            exec(shell.compile(tree, filename, "exec"), shell.user_global_ns, shell.user_ns)
        return aligned

    def _cell_syntax_error(self, exc: SyntaxError, filename: str) -> CellSyntaxError:
        """A SyntaxError in the body, rendered exactly as IPython renders one in a plain cell
        ("Cell In[4], line 3", the line, a caret, the message): no frames of ours."""
        exc.filename = filename
        try:
            rendered = self.shell.SyntaxTB.structured_traceback(type(exc), exc, [])
        except Exception:  # noqa: BLE001 - a renderer problem must not hide the user's error
            rendered = None
        return CellSyntaxError(f"cell line {exc.lineno}: {exc.msg}", error_type=type(exc).__name__,
                               msg=exc.msg, lineno=exc.lineno, offset=exc.offset, text=exc.text,
                               filename=filename, rendered=rendered)

    def _show(self, outcome: Outcome, options: Options) -> None:
        from IPython.display import display

        from .validation.summary import ModelSummary

        display(ModelSummary(outcome.report, logged_to=outcome.logged_to, seconds=outcome.seconds,
                             replaced=outcome.replaced, stored=_stored_as(outcome, options, self.shell.user_ns),
                             store=_store_text(outcome.run), mlflow_model=_mlflow_model(outcome)))
        old = self._panels.pop(options.cell_key, None)
        if old is not None:  # the cell's previous panel: its output is gone, stop its worker
            old.close()
        if options.panel:
            from .panel.widget import PredictPanel

            sample = None if options.sample is MISSING else options.sample
            if outcome.run is not None and hasattr(outcome.run, "model_package_dir"):
                panel = PredictPanel(outcome.run, sample_input=sample)
            else:  # --no-log, or a foreign run: the package just validated
                panel = PredictPanel(outcome.report.package_dir, sample_input=sample,
                                     artifacts=outcome.artifacts or None)
            self.last_panel = panel  # for code that drives the panel (tests, scripts)
            self._panels[options.cell_key] = panel
            display(panel)


def _store_text(run: Any) -> str:
    """Why the run's store (named in the headline) was chosen: `Client.store_origin`."""
    from .tracking.client import origin_of

    store = getattr(run, "_store", None)
    return (origin_of(store) or "") if store is not None else ""


def _mlflow_model(outcome: Outcome) -> str:
    info = getattr(outcome.logged, "info", None)
    model_id = getattr(info, "meta", {}).get("mlflow_model_id") if info is not None else None
    return model_id if isinstance(model_id, str) else ""


def _stored_as(outcome: Outcome, options: Options, namespace: dict) -> str:
    """Where the logged package lives and how to get it back, in code the user can paste."""
    if outcome.run is None or not callable(getattr(outcome.run, "get_model", None)):
        return ""
    run = outcome.run
    name = options.run or next((k for k, v in namespace.items()
                                if v is run and not k.startswith("_")), None)
    if name is None:
        kind = "experiment_run" if type(run).__name__ == "ExperimentRun" else None
        location = getattr(run, "store_location", None)
        if kind is None or location is None:
            return ""
        name = f"Client(store={str(location)!r}).get_experiment_run(id={run.id!r})"
    return f"{name}.get_model() (the class) or {name}.download_model('folder') (the package)"


def register(ipython) -> None:
    """Register `%%verta_model` with an IPython shell (`%load_ext verta_jupyter`), and start the
    spare worker its first rebuild proof will use."""
    from .worker.client import prime_spare

    ipython.register_magics(VertaMagics)
    prime_spare()


def unregister(ipython) -> None:
    """Remove `%%verta_model` (`%unload_ext verta_jupyter`). IPython has no public call for this:
    drop the magic and its Magics instance from the manager, as register_magics added them."""
    manager = ipython.magics_manager
    for name in VertaMagics.magics["cell"]:
        manager.magics["cell"].pop(name, None)
    manager.registry.pop(VertaMagics.__name__, None)
