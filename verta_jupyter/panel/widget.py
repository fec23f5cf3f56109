"""PredictPanel: JSON in -> the model rebuilt from its package -> JSON out, in the notebook.

Core ipywidgets 8 only (no front-end build), so it renders in JupyterLab, Notebook 7, VS Code and
Colab. Results and errors are HTML widgets, never `with output:` (inside a callback that output
is captured by the browser, not the kernel). Every part has a stable CSS class (`vj-*`) so the
same selectors drive it in any front end. `predict_json(text)` is the exact path the button
takes; the button only adds busy state and rendering around it.

This module is the panel's layout and wiring; what it shows is rendered by `widget_render`
and what it talks to (a package, its artifacts, its example) is resolved by `widget_source`.
"""
from __future__ import annotations

import collections
import html
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..errors import JsonConversionError, PredictError, VertaError
from ..jsonify.output import to_json_compatible
from .render import (KIND_TITLES, error_html, history_label, output_html, snippets_html,
                     status_html, table_html, timing_text)
from ..worker.client import InProcessPredictor, WorkerClient
from .predictors import EndpointPredictor, Predictor
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
        raise InvalidJsonError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}",
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
        self.input = make(widgets.Textarea(rows=8, placeholder="JSON input, e.g. {\"x\": 1}",
                                           layout=widgets.Layout(width="100%")), "vj-input")
        self.predict_button = make(widgets.Button(description="Predict", button_style="primary",
                                                  icon="play"), "vj-predict")
        self.reset_button = make(widgets.Button(description="Reset to example",
                                                disabled=self.model.example_text == ""), "vj-reset")
        self.raw_toggle = make(widgets.ToggleButton(description="Raw JSON", value=False,
                                                    tooltip="Show the exact JSON returned"),
                               "vj-raw-toggle")
        self.csv_upload = make(widgets.FileUpload(accept=".csv", multiple=False,
                                                  description="CSV"), "vj-csv")
        self.csv_preview = make(widgets.HTML(), "vj-csv-preview")
        self.status = make(widgets.HTML(status_html("Ready; the model starts on the first "
                                                          "Predict.")), "vj-status")
        self.result = make(widgets.HTML(), "vj-result")
        self.error = make(widgets.HTML(), "vj-error")
        self.history_box = make(widgets.VBox(), "vj-history")
        self.snippets = make(widgets.HTML(), "vj-snippets")
        self.predict_button.on_click(lambda _: self.click_predict())
        self.reset_button.on_click(lambda _: self.reset())
        self.raw_toggle.observe(lambda _: self._render_output(self.last_output_text), names="value")
        self.csv_upload.observe(self._on_csv, names="value")

    def _layout(self) -> list:
        buttons = widgets.HBox([self.predict_button, self.reset_button, self.raw_toggle,
                                self.csv_upload])
        return [self.model_info, self.input, buttons, self.csv_preview, self.status, self.error,
                self.result, self.history_box, self.snippets]

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
            self._show_error(kind, exc)
            self._remember(text, None, time.perf_counter() - started, kind, exc)
            self.status.value = status_html(f"Failed: {KIND_TITLES[kind]}.", "error")
        else:
            self._clear_error()
            self._render_output(out)
            self._remember(text, out, self.predictor.last_seconds, None, None)
            self.status.value = status_html(timing_text(self.predictor), "ok")
            self._render_snippets(text)
        finally:
            self._set_busy(False)

    def reset(self) -> None:
        """Put the logged example back in the editor."""
        self.input.value = self.model.example_text
        self.csv_preview.value = ""

    def restore(self, index: int) -> None:
        """Restore history entry `index` (0 = newest): its input and its output or error."""
        entry = list(reversed(self.history))[index]
        self.input.value = entry["input"]
        if entry["kind"] is None:
            self._clear_error()
            self._render_output(entry["output"])
        else:
            self._show_error(entry["kind"], entry["error"])
        self._render_snippets(entry["input"])
        self.status.value = status_html(f"Restored call from {entry['at']}.")

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
            self._show_error("invalid-json", exc)
            return
        if self.error_kind == "invalid-json":
            self._clear_error()
        self.predict_button.disabled = self.busy

    def _on_csv(self, change: dict) -> None:
        files = change["new"]
        if not files:
            return
        upload = files[0]
        self.csv_upload.value = ()  # so that the same file can be chosen again
        try:
            records, note = _csv_records(bytes(upload["content"]), self.csv_row_limit)
        except Exception as exc:  # noqa: BLE001 - a bad file is shown, not raised
            self._show_error("csv", exc)
            return
        self.input.value = json.dumps(records, indent=1, ensure_ascii=False)
        self.csv_preview.value = (f"<div><b>{html.escape(upload['name'])}</b>: {note}</div>"
                                  + table_html(records[:5]))

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        if busy:
            self.status.value = status_html("Predicting...", "busy")
        self.predict_button.description = "Predicting..." if busy else "Predict"
        self.predict_button.disabled = busy or self.error_kind == "invalid-json" or \
            not self.input.value.strip()

    # -- rendering --------------------------------------------------------------------------------

    def _render_output(self, text: str | None) -> None:
        self.last_output_text = text
        if text is None:
            self.result.value = ""
            return
        self.result.value = output_html(text, self.raw_toggle.value)

    def _show_error(self, kind: str, exc: BaseException) -> None:
        self.error_kind = kind
        self.error.value = error_html(kind, exc)
        if kind != "invalid-json":
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
                                    tooltip=entry["input"][:500],
                                    layout=widgets.Layout(width="auto"))
            button.add_class("vj-history-item")
            button.on_click(lambda _, i=index: self.restore(i))
            buttons.append(button)
        for old in self.history_box.children:
            old.close()
        self.history_box.children = buttons

    def _render_snippets(self, text: str) -> None:
        self.snippets.value = snippets_html(*self.model.snippets(text))


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, InvalidJsonError):
        return "invalid-json"
    if isinstance(exc, (PredictError, JsonConversionError)):
        return exc.kind.value
    return "error"


def _csv_records(content: bytes, limit: int) -> tuple[list[dict], str]:
    """CSV bytes -> (records, a note saying how many rows were kept)."""
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(content), nrows=limit + 1)
    total = len(frame)
    if total > limit:
        frame = frame.iloc[:limit]
        lines = max(content.count(b"\n") - 1 + (not content.endswith(b"\n")), limit + 1)
        note = f"first {limit} of about {lines} rows kept (row cap {limit})"
    else:
        note = f"{total} rows"
    return to_json_compatible(frame), f"{note} x {frame.shape[1]} columns"
