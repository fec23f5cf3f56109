"""PredictPanel: JSON in -> the model rebuilt from its package -> JSON out, in the notebook.

Core ipywidgets 8 only (no front-end build), so it renders in JupyterLab, Notebook 7, VS Code and
Colab. Results and errors are HTML widgets, never `with output:` (inside a callback that output
is captured by the browser, not the kernel). Every part has a stable CSS class (`vj-*`) so the
same selectors drive it in any front end. `predict_json(text)` is the exact path the button
takes; the button only adds busy state and rendering around it.

This module is the panel's layout and wiring; what it shows is rendered by `render`, what it
talks to (a package, its artifacts, its example) is resolved by `sources`, the input form is
`form` and the CSV batch mode `batch`.

States a user can read at a glance: an error is said once (its title in the error box, only the
timing in the status line); a result whose input has since been edited is marked stale; the
history is a list (icon, time, latency, input cut with an ellipsis) whose entries restore.
"""
from __future__ import annotations

import collections
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..errors import JsonConversionError, PredictError, VertaError
from ..worker.client import InProcessPredictor, WorkerClient
from .batch import BatchSection
from .form import InputForm, RecordsForm, form_fits, records_fit
from .predictors import EndpointPredictor, Predictor
from .render import (STYLE, duration, error_html, history_label, json_error_message, output_html,
                     snippets_html, stale_note, status_html, timeout_message, timing_text)
from .sources import resolve_source

__all__ = ["PredictPanel", "InvalidJsonError"]


class InvalidJsonError(VertaError, ValueError):
    """The panel's input is not strict JSON; `.line` and `.column` say where."""

    def __init__(self, message: str, line: int = 0, column: int = 0):
        super().__init__(message)
        self.line, self.column = line, column


def parse_json(text: str) -> Any:
    """Strict JSON (no NaN/Infinity tokens) or InvalidJsonError with line and column."""
    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON; use null")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise InvalidJsonError(f"line {exc.lineno}, column {exc.colno}: {json_error_message(exc.msg)}",
                               exc.lineno, exc.colno) from None
    except RecursionError:  # hostile or accidental nesting: an error to show, not a traceback
        raise InvalidJsonError("nested too deeply to read (past Python's recursion limit); "
                               "send a flatter structure") from None
    except ValueError as exc:
        position = text.find(str(exc).split()[0])
        if position < 0 or "integer string conversion" in str(exc):  # a too-long integer
            raise InvalidJsonError(f"{exc}".split("; use")[0] + "; send it as a string") from None
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        raise InvalidJsonError(f"line {line}, column {column}: {exc}", line, column) from None


class PredictPanel(widgets.VBox):
    """A widget that sends JSON through a logged model and shows the answer.

    `source` is a run or model version (anything with `model_package_dir()` or
    `download_model(path)`, and `fetch_artifacts(keys)`), a package directory, or a class
    (captured on the fly). The model runs in an isolated worker process unless
    `in_process=True`, or in a deployment when `endpoint=` is an `Endpoint` (or anything with
    `predict(data)`). `sample_input` pre-fills the editor (default: the package's example).
    """

    def __init__(self, source: Any, sample_input: Any = None, *, artifacts: dict | None = None,
                 timeout: float = 30.0, in_process: bool = False, csv_row_limit: int = 1000,
                 history_size: int = 10, namespace: dict | None = None, endpoint: Any = None):
        # named by its owner: a killed kernel's folder is swept by the next (worker.scratch)
        tmp = tempfile.TemporaryDirectory(prefix=f"vj-panel-{os.getpid()}-")
        try:
            self.model = resolve_source(source, Path(tmp.name), artifacts, sample_input, namespace)
        except BaseException:
            tmp.cleanup()
            raise
        self._tmp = tmp
        if endpoint is not None:  # a deployed model answers; the package still names and fills it
            self.predictor: Predictor = EndpointPredictor(endpoint)
            self.model.origin["endpoint"] = getattr(endpoint, "url", repr(endpoint))
        elif in_process:
            self.predictor = InProcessPredictor(self.model.package_dir, self.model.artifacts, timeout)
        else:
            self.predictor = WorkerClient(self.model.package_dir, self.model.artifacts, timeout)
        self.csv_row_limit = csv_row_limit
        self.history: collections.deque[dict] = collections.deque(maxlen=history_size)
        self.busy = False
        self.error_kind: str | None = None
        self.last_output_text: str | None = None
        self.result_input: str | None = None  # the input the shown result answers
        self.stale = False  # the editor no longer holds result_input
        self._build_widgets()
        super().__init__(children=self._layout())
        self.add_class("vj-panel")
        self.input.observe(self._on_input, names="value")
        self.input.value = self.model.example_text
        self._validate(self.input.value)
        self._render_snippets(self.input.value)

    def __repr__(self) -> str:
        # the text form (terminals, logs); front ends render the widget itself
        return (f"PredictPanel({self.model.class_name}, package {self.model.digest[:12]}, "
                f"{self.predictor.where}: open in Jupyter to use, or call .predict_json(text))")

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        # ipywidgets cuts text/plain at 110 characters, which took the end of the one
        # instruction a terminal user gets (".predict_json(te…"); the text form is ours, whole
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle["text/plain"] = repr(self)
        return bundle

    # -- the one predict path ---------------------------------------------------------------------

    def predict_json(self, text: str) -> str:
        """JSON text in -> the model's output as strict JSON text (what the Predict button runs)."""
        data = parse_json(text)
        output = self.predictor.predict(data)
        return json.dumps(output, allow_nan=False, ensure_ascii=False)

    # -- widgets ----------------------------------------------------------------------------------

    def _build_widgets(self) -> None:
        def make(widget, css):
            widget.add_class(css)
            return widget

        self.model_info = make(widgets.HTML(self.model.info_html()), "vj-model-info")
        # width auto: the column stretches it, margins included (100% + margin ran out of the box)
        self.input = make(widgets.Textarea(rows=8, placeholder="JSON input, e.g. {\"x\": 1}",
                                           layout=widgets.Layout(width="auto")), "vj-input")
        self.predict_button = make(widgets.Button(description="Predict", button_style="primary",
                                                  icon="play"), "vj-predict")
        self.reset_button = make(widgets.Button(description="Reset to example",
                                                disabled=self.model.example_text == ""), "vj-reset")
        self.raw_toggle = make(widgets.ToggleButton(description="Raw JSON", value=False,
                                                    tooltip="Show the exact JSON returned"),
                               "vj-raw-toggle")
        self.status = make(widgets.HTML(status_html("Ready; the model starts on the first "
                                                          "Predict.")), "vj-status")
        self.result = make(widgets.HTML(), "vj-result")
        self.stale_box = make(widgets.HTML(), "vj-stale-box")
        self.error = make(widgets.HTML(), "vj-error")
        self.history_title = make(widgets.HTML(), "vj-history-title")  # shown with the 1st call
        self.history_box = make(widgets.VBox(), "vj-history")
        self.snippets = make(widgets.HTML(), "vj-snippets")
        self.batch = BatchSection(self.predict_json, row_limit=self.csv_row_limit,
                                  mode="table" if self.model.example_text.lstrip().startswith("[")
                                  else "rows")
        self.csv_upload, self.csv_preview = self.batch.upload, self.batch.info
        self.form = self._make_form()
        self.predict_button.on_click(lambda _: self.click_predict())
        self.reset_button.on_click(lambda _: self.reset())
        self.raw_toggle.observe(lambda _: self._render_output(self.last_output_text), names="value")

    def _make_form(self) -> InputForm | RecordsForm | None:
        try:
            example = json.loads(self.model.example_text) if self.model.example_text else None
        except ValueError:
            return None
        if form_fits(example):
            return InputForm(example, self._on_form)
        return RecordsForm(example, self._on_form) if records_fit(example) else None

    def _layout(self) -> list:
        editor: widgets.Widget = self.input
        if self.form is not None:  # the form for trying it, the JSON for precision: two tabs
            editor = widgets.Tab(children=[self.form, self.input], titles=("Form", "JSON"))
            editor.add_class("vj-editor-tabs")
        buttons = widgets.HBox([self.predict_button, self.reset_button, self.raw_toggle])
        batch = widgets.Accordion(children=[self.batch], titles=("Batch: predict a CSV file",),
                                  selected_index=None)
        batch.add_class("vj-batch-fold")
        return [widgets.HTML(STYLE), self.model_info, editor, buttons, self.status, self.error,
                self.stale_box, self.result, self.history_title, self.history_box, batch,
                self.snippets]

    # -- actions ----------------------------------------------------------------------------------

    def click_predict(self) -> None:
        """What the Predict button does: busy state, `predict_json`, then render or explain."""
        if self.busy or self.predict_button.disabled:
            return
        text = self.input.value
        self._set_busy(True)
        started = time.perf_counter()
        try:
            out = self.predict_json(text)
        except Exception as exc:  # noqa: BLE001 - every failure is shown; the panel stays usable
            kind = _error_kind(exc)
            seconds = time.perf_counter() - started
            self._show_error(kind, exc)
            self._remember(text, None, seconds, kind, exc)
            # the error box says what failed; the status line only when and where
            self.status.value = status_html(f"Failed after {duration(seconds)} · "
                                            f"{_where(self.predictor)}", "error")
        else:
            self._clear_error()
            self._render_output(out, text)
            self._remember(text, out, self.predictor.last_seconds, None, None)
            self.status.value = status_html(timing_text(self.predictor), "ok")
            self._render_snippets(text)
        finally:
            self._set_busy(False)

    def reset(self) -> None:
        """Put the logged example back in the editor."""
        self.input.value = self.model.example_text

    def restore(self, index: int) -> None:
        """Restore history entry `index` (0 = newest): its input and its output or error."""
        entry = list(reversed(self.history))[index]
        self.input.value = entry["input"]
        if entry["kind"] is None:
            self._clear_error()
            self._render_output(entry["output"], entry["input"])
        else:
            self._show_error(entry["kind"], entry["error"])
        self._render_snippets(entry["input"])
        for position, item in enumerate(self.history_box.children):
            (item.add_class if position == index else item.remove_class)("vj-history-current")
        self.status.value = status_html(f"Restored the call from {entry['at']}.")

    def close(self) -> None:
        """Stop the model's worker process, then close the widget."""
        predictor, tmp = getattr(self, "predictor", None), getattr(self, "_tmp", None)
        if predictor is not None:
            predictor.close()
        if tmp is not None:
            tmp.cleanup()
        super().close()

    # -- callbacks --------------------------------------------------------------------------------

    def _on_input(self, change: dict) -> None:
        self._validate(change["new"])
        self._mark_stale(change["new"])
        if self.form is not None and self.error_kind != "invalid-json":
            self.form.show(json.loads(change["new"]) if change["new"].strip() else None)

    def _on_form(self, data: Any) -> None:
        self.input.value = json.dumps(data, indent=2, ensure_ascii=False)

    def _mark_stale(self, text: str) -> None:
        """A result stays visible but greyed, and says so, once its input has been edited."""
        stale = self.result_input is not None and text != self.result_input
        if stale == self.stale:
            return
        self.stale = stale
        (self.result.add_class if stale else self.result.remove_class)("vj-stale")
        self.stale_box.value = stale_note(
            "The result below answers an earlier input; Predict to update it.") if stale else ""

    def _validate(self, text: str) -> None:
        """Predict is enabled only for valid JSON; an empty editor is not an error yet."""
        if not text.strip():
            if self.error_kind == "invalid-json":
                self._clear_error()
            self.predict_button.disabled = True
            return
        try:
            parse_json(text)
        except InvalidJsonError as exc:
            self.predict_button.disabled = True
            self._show_error("invalid-json", exc, text)
            return
        if self.error_kind == "invalid-json":
            self._clear_error()
        self.predict_button.disabled = self.busy

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        if busy:
            self.status.value = status_html("Predicting...", "busy")
        self.predict_button.description = "Predicting..." if busy else "Predict"
        self.predict_button.disabled = busy or self.error_kind == "invalid-json" or \
            not self.input.value.strip()

    # -- rendering --------------------------------------------------------------------------------

    def _render_output(self, text: str | None, for_input: str | None = None) -> None:
        self.last_output_text = text
        if for_input is not None or text is None:
            self.result_input = for_input
            self._mark_stale(self.input.value)
        self.result.value = "" if text is None else output_html(text, self.raw_toggle.value)

    def _show_error(self, kind: str, exc: BaseException, source: str = "") -> None:
        self.error_kind = kind
        message = timeout_message(self.model.class_name, exc) if kind == "timeout" else None
        self.error.value = error_html(kind, exc, self.model.package_dir, source, message)
        if kind != "invalid-json":  # invalid JSON keeps the last result, marked stale
            self._render_output(None)

    def _clear_error(self) -> None:
        self.error_kind = None
        self.error.value = ""

    def _remember(self, text: str, out: str | None, seconds: float | None, kind: str | None,
                  exc: BaseException | None) -> None:
        at = time.strftime("%H:%M:%S")
        self.history.append({"input": text, "output": out, "seconds": seconds, "kind": kind,
                             "error": exc, "at": at})
        buttons = []
        for index, entry in enumerate(reversed(self.history)):
            button = widgets.Button(description=history_label(entry),
                                    tooltip="Restore: " + entry["input"][:500],
                                    layout=widgets.Layout(width="100%"))
            button.add_class("vj-history-item")
            button.on_click(lambda _, i=index: self.restore(i))
            buttons.append(button)
        for old in self.history_box.children:
            old.close()
        self.history_box.children = buttons
        self.history_title.value = "History · click an entry to restore its input and result"

    def _render_snippets(self, text: str) -> None:
        self.snippets.value = snippets_html(*self.model.snippets(text))


def _where(predictor: Any) -> str:
    return getattr(predictor, "where", None) or (
        "isolated worker" if predictor.isolated else "in this kernel")


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, InvalidJsonError):
        return "invalid-json"
    if isinstance(exc, (PredictError, JsonConversionError)):
        return exc.kind.value
    return "error"
