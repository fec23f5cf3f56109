"""`%%verta_model`: run the cell, then capture -> validate -> log -> show a summary and a panel.

The IPython side (`VertaMagics`) only parses arguments and displays results; `ModelCell` is the
engine and takes a plain namespace and an `execute` callable, so it runs without IPython.
User mistakes in flags are IPython's own `UsageError` (printed without a traceback); model
problems are `ValidationError`s naming the identifier and the check code, and nothing is logged.
"""
from __future__ import annotations

import ast
import inspect
import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from .catalog import problem
from .errors import AlreadyExistsError, ValidationError
from .package.format import MISSING

__all__ = ["register", "VertaMagics", "ModelCell", "Options", "Outcome", "parse_sample"]

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


def defined_classes(cell: str) -> list[str]:
    """Names of the classes a cell defines at module level (inside if/try/with too)."""
    try:
        tree = ast.parse(cell)
    except SyntaxError:
        return []
    found: list[str] = []
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, ast.ClassDef):
            found.append(node.name)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo.extend(n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt))
    return list(dict.fromkeys(found))


class ModelCell:
    """The engine behind `%%verta_model`: execute the cell, pick the class, validate, log."""

    def __init__(self, namespace: dict, options: Options,
                 execute: Callable[[str], str] | None = None):
        self.ns, self.options = namespace, options
        self.execute = execute or self._exec

    def _exec(self, cell: str) -> str:
        exec(compile(cell, "<verta_model cell>", "exec"), self.ns)
        return cell

    def run(self, cell: str) -> Outcome:
        __tracebackhide__ = True  # a failing cell body shows the user's frames, not ours
        started = time.perf_counter()
        source = self.execute(cell)  # the text as compiled: its line numbers are the cell's
        cell_seconds = time.perf_counter() - started
        cls = self.pick_class(source)
        o = self.options
        run = self.find_run(required=o.log) if (o.log or o.run or o.artifacts) else None
        paths: dict = {}
        if self.options.log:
            report, logged_to = self.log(cls, run, source)
        else:
            paths = self.artifact_paths(run)
            report, logged_to = self.validate_only(cls, paths, source), ""
        return Outcome(cls, report, run if self.options.log else None, logged_to,
                       time.perf_counter() - started - cell_seconds, cell_seconds, paths)

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
        classes = [n for n in defined_classes(cell) if isinstance(self.ns.get(n), type)]
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
                             allow_secrets=self.options.allow_secrets).report

    def artifact_paths(self, run) -> dict[str, Any]:
        """key -> local path from the run (None for a key it does not have: VJ301)."""
        keys = self.options.artifacts
        fetch = getattr(run, "fetch_artifacts", None)
        if not keys or fetch is None:
            return {k: None for k in keys}
        from .errors import VertaError

        paths: dict[str, Any] = {}
        for key in keys:
            try:
                paths[key] = fetch([key])[key]
            except (VertaError, KeyError, LookupError):
                paths[key] = None
        return paths

    def log(self, cls: type, run, cell: str):
        from .validation.validate import observe_reports, prepare_model

        o = self.options
        kwargs = dict(artifacts=o.artifacts or None, sample_input=o.sample, overwrite=o.overwrite,
                      namespace=self.ns, cell_source=cell, allow_secrets=o.allow_secrets)
        accepted = _accepted(run.log_model, kwargs)
        if "allow_secrets" not in accepted and o.allow_secrets:
            raise BadArguments(f"--allow-secrets: {type(run).__name__}.log_model cannot take it")
        report = None
        if "namespace" not in accepted:  # a foreign log_model: validate here, before it logs
            report = prepare_model(cls, namespace=self.ns, cell_source=cell,
                                   artifacts=self.artifact_paths(run), sample_input=o.sample,
                                   allow_secrets=o.allow_secrets).report
        if o.sample is MISSING:
            accepted.pop("sample_input", None)
        with observe_reports() as seen:
            try:
                result = run.log_model(cls, **accepted)
            except AlreadyExistsError as exc:
                raise AlreadyExistsError(f"{exc} (here: add --overwrite to the %%verta_model line)",
                                         exc.problems) from None
        report = seen[-1] if seen else getattr(result, "report", report)
        return report, _describe_run(run)


def _accepted(fn: Callable, kwargs: dict) -> dict:
    """The keyword arguments `fn` can take (all of them if it has **kwargs)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return dict(kwargs)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}


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
    @argument("--overwrite", action="store_true", help="replace a model already logged to the run")
    @argument("--allow-secrets", action="store_true", help="capture globals that look like "
              "secrets (only when they are not secret)")
    @no_var_expand
    @cell_magic
    def verta_model(self, line: str, cell: str):
        """Run the cell, then capture, validate and log the model class it defines.

        The cell runs like any cell first. Then the class is captured as standalone source,
        checked (interface, names, secrets, sample predict, JSON output, rebuild in a fresh
        process), logged to the run, and a summary and a predict panel are shown. Any problem
        fails the cell with its check code, and nothing is logged.
        """
        __tracebackhide__ = True
        try:
            options = self._options(self._parse(line))
            outcome = ModelCell(self.shell.user_ns, options, execute=self._run_body).run(cell)
        except BadArguments as exc:
            raise UsageError(str(exc)) from None
        self._show(outcome, options)

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
                       allow_secrets=args.allow_secrets)

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
        aligned = "\n" * (1 + blank) + shell.transform_cell(cell)
        filename = shell.compile.cache(aligned, _prompt_number(shell), raw_code=aligned)
        tree = shell.transform_ast(shell.compile.ast_parse(aligned, filename=filename))
        with shell.builtin_trap:
            exec(shell.compile(tree, filename, "exec"), shell.user_global_ns, shell.user_ns)
        return aligned

    def _show(self, outcome: Outcome, options: Options) -> None:
        from IPython.display import display

        from .validation.summary import ModelSummary

        display(ModelSummary(outcome.report, logged_to=outcome.logged_to, seconds=outcome.seconds))
        if options.panel:
            from .panel.widget import PredictPanel

            sample = None if options.sample is MISSING else options.sample
            if outcome.run is not None and hasattr(outcome.run, "model_package_dir"):
                panel = PredictPanel(outcome.run, sample_input=sample)
            else:  # --no-log, or a foreign run: the package just validated
                panel = PredictPanel(outcome.report.package_dir, sample_input=sample,
                                     artifacts=outcome.artifacts or None)
            self.last_panel = panel  # for code that drives the panel (tests, scripts)
            display(panel)


def register(ipython) -> None:
    """Register `%%verta_model` with an IPython shell (`%load_ext verta_jupyter`)."""
    ipython.register_magics(VertaMagics)


def _prompt_number(shell) -> int:
    """The In[N] the user sees for the running cell. IPython 9 has already moved
    `execution_count` to N+1 while a cell runs; the history holds this cell at index N."""
    history = shell.history_manager.input_hist_parsed
    return min(shell.execution_count, len(history) - 1) if len(history) > 1 else shell.execution_count
