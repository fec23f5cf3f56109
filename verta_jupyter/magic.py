"""`%%verta_model`: run the cell, then capture -> validate -> log -> show a summary and a panel.

This module is the IPython side: it parses arguments, runs the body as IPython runs a cell,
and displays the summary and the panel. The engine (`modelcell.ModelCell`: pick the class,
validate, log) runs without IPython. User mistakes in flags are IPython's own `UsageError`
(printed without a traceback).

Re-running a cell replaces the model that cell logged, without `--overwrite` (see `reruns`).
"""
from __future__ import annotations

import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from .errors import CellSyntaxError
from .modelcell import BadArguments, ModelCell, Options, Outcome, parse_sample
from .package.format import MISSING
from .reruns import CellLog, cell_key
from .validation.warn import shown_in_summary

__all__ = ["register", "unregister", "VertaMagics"]


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
              "(another cell, the Python API) logged to the run; re-running this cell, also "
              "after a kernel restart, replaces its own model without it")
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
            options.cell_key = cell_key(self._cell_id(), f"%%verta_model {line}\n{cell}",
                                        self._notebook())
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

    def _notebook(self) -> str | None:
        # ipykernel names the notebook's server session here (JupyterLab, Notebook 7)
        name = self.shell.user_ns.get("__session__")
        return name if isinstance(name, str) and name else None

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
            code = shell.compile(shell.transform_ast(tree), filename, "exec")
        except SyntaxError as exc:  # the parser's, or the compiler's ('await' outside function)
            raise self._cell_syntax_error(exc, filename) from exc
        with shell.builtin_trap:
            exec(code, shell.user_global_ns, shell.user_ns)
        return aligned

    def _cell_syntax_error(self, exc: SyntaxError, filename: str) -> CellSyntaxError:
        """A SyntaxError in the body, rendered exactly as IPython renders one in a plain cell
        ("Cell In[4], line 3", the line, a caret, the message): no frames of ours."""
        exc.filename = filename
        if "await" in str(exc.msg):  # a plain cell may await at top level; this magic cannot
            exc.msg = (f"{exc.msg}: %%verta_model runs its cell synchronously, so await in a "
                       "cell before it (or inside a method)")
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
