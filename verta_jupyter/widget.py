"""PredictPanel: JSON in -> the model rebuilt from its package -> JSON out, in the notebook.

Core ipywidgets 8 only (no front-end build), so it renders in JupyterLab, Notebook 7, VS Code and
Colab. Results and errors are HTML widgets, never `with output:` (inside a callback that output
is captured by the browser, not the kernel). Every part has a stable CSS class (`vj-*`) so the
same selectors drive it in any front end. `predict_json(text)` is the exact path the button
takes; the button only adds busy state and rendering around it.
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

from .errors import (JsonConversionError, PredictError, VertaError, WorkerCrashedError,
                     WorkerTimeoutError)
from .jsonify import to_json_compatible

__all__ = ["PredictPanel", "InvalidJsonError"]

_TABLE_ROWS = 200  # rows shown in an HTML table; the raw view always has everything
_PRETTY_CHARS = 200_000


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
    except ValueError as exc:
        position = text.find(str(exc).split()[0])
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        raise InvalidJsonError(f"line {line}, column {column}: {exc}", line, column) from None


class PredictPanel(widgets.VBox):
    """A widget that sends JSON through a logged model and shows the answer.

    `source` is a run or model version (anything with `model_package_dir()` or
    `download_model(path)`, and `fetch_artifacts(keys)`), a package directory, or a class
    (captured on the fly). The model runs in an isolated worker process unless
    `in_process=True`. `sample_input` pre-fills the editor (default: the package's example).
    """

    def __init__(self, source: Any, sample_input: Any = None, *, artifacts: dict | None = None,
                 timeout: float = 30.0, in_process: bool = False, csv_row_limit: int = 1000,
                 history_size: int = 10, namespace: dict | None = None):
        tmp = tempfile.TemporaryDirectory(prefix="vj-panel-")
        try:
            self.model = _resolve_source(source, Path(tmp.name), artifacts, sample_input, namespace)
        except BaseException:
            tmp.cleanup()
            raise
        self._tmp = tmp
        if in_process:
            from .worker import InProcessPredictor
            self.predictor = InProcessPredictor(self.model.package_dir, self.model.artifacts, timeout)
        else:
            from .worker import WorkerClient
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
        where = "isolated worker" if self.predictor.isolated else "in process"
        return (f"PredictPanel({self.model.class_name}, package {self.model.digest[:12]}, "
                f"{where}: open in Jupyter to use, or call .predict_json(text))")

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
        self.status = make(widgets.HTML(self._status_html("Ready; the model starts on the first "
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
            self.status.value = self._status_html(f"Failed: {_KIND_TITLES[kind]}.", "error")
        else:
            self._clear_error()
            self._render_output(out)
            self._remember(text, out, self.predictor.last_seconds, None, None)
            self.status.value = self._status_html(self._timing_text(), "ok")
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
        self.status.value = self._status_html(f"Restored call from {entry['at']}.")

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
                                  + _table_html(records[:5]))

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        if busy:
            self.status.value = self._status_html("Predicting...", "busy")
        self.predict_button.description = "Predicting..." if busy else "Predict"
        self.predict_button.disabled = busy or self.error_kind == "invalid-json" or \
            not self.input.value.strip()

    # -- rendering --------------------------------------------------------------------------------

    def _render_output(self, text: str | None) -> None:
        self.last_output_text = text
        if text is None:
            self.result.value = ""
            return
        if self.raw_toggle.value:
            self.result.value = f'<pre class="vj-raw">{html.escape(text)}</pre>'
            return
        output = json.loads(text)
        if _is_records(output):
            self.result.value = _table_html(output)
        else:
            pretty = json.dumps(output, indent=2, ensure_ascii=False)
            if len(pretty) > _PRETTY_CHARS:
                pretty = pretty[:_PRETTY_CHARS] + "\n... (truncated; the raw view has it all)"
            self.result.value = f'<pre class="vj-pretty">{html.escape(pretty)}</pre>'

    def _show_error(self, kind: str, exc: BaseException) -> None:
        self.error_kind = kind
        trace = getattr(exc, "model_traceback", "") or ""
        details = (f"<details class=\"vj-traceback\"><summary>Traceback (the model's frames)"
                   f"</summary><pre>{html.escape(trace)}</pre></details>") if trace else ""
        self.error.value = (f'<div class="vj-error-box vj-error-{kind}" style="color:#b00020">'
                            f"<b>{_KIND_TITLES[kind]}</b>: "
                            f"<span class=\"vj-error-message\">{html.escape(str(exc))}</span>"
                            f"{details}</div>")
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
            timing = _duration(entry["seconds"]) if entry["seconds"] is not None else "-"
            outcome = "ok" if entry["kind"] is None else _KIND_TITLES[entry["kind"]]
            summary = " ".join(entry["input"].split())[:40]
            button = widgets.Button(description=f"{entry['at']} {timing} {outcome}: {summary}",
                                    tooltip=entry["input"][:500],
                                    layout=widgets.Layout(width="auto"))
            button.add_class("vj-history-item")
            button.on_click(lambda _, i=index: self.restore(i))
            buttons.append(button)
        for old in self.history_box.children:
            old.close()
        self.history_box.children = buttons

    def _render_snippets(self, text: str) -> None:
        python, curl = self.model.snippets(text)
        self.snippets.value = (
            "<details><summary>Copy as Python</summary>"
            f'<pre class="vj-snippet-python">{html.escape(python)}</pre></details>'
            "<details><summary>Copy as curl</summary>"
            f'<pre class="vj-snippet-curl">{html.escape(curl)}</pre></details>')

    def _timing_text(self) -> str:
        p = self.predictor
        parts = [f"{_duration(p.last_seconds)} round trip"]
        if p.last_model_seconds is not None:
            parts.append(f"predict {_duration(p.last_model_seconds)}")
        if p.load_seconds is not None:
            parts.append(f"model loaded in {p.load_seconds:.2f} s")
        parts.append("isolated worker" if p.isolated else "in this kernel")
        return " · ".join(parts)

    @staticmethod
    def _status_html(text: str, state: str = "idle") -> str:
        return f'<span class="vj-status-{state}">{html.escape(text)}</span>'


_KIND_TITLES = {
    "invalid-json": "Invalid JSON", "input": "Input does not fit the model",
    "model": "The model raised an exception", "output": "Output is not JSON-compatible",
    "crash": "The worker crashed", "timeout": "The model timed out",
    "load": "The model could not be built", "csv": "CSV could not be read", "error": "Error",
}


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, InvalidJsonError):
        return "invalid-json"
    if isinstance(exc, WorkerTimeoutError):
        return "timeout"
    if isinstance(exc, WorkerCrashedError):
        return "crash"
    if isinstance(exc, JsonConversionError):
        return "output" if getattr(exc, "kind", "") == "output" else "input"
    if isinstance(exc, PredictError):
        return "load" if getattr(exc, "kind", "") == "load" else "model"
    return "error"


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def _table_html(records: list[dict]) -> str:
    columns: dict[str, None] = {}
    for record in records[:_TABLE_ROWS]:
        columns.update(dict.fromkeys(record))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in records[:_TABLE_ROWS])
    more = (f'<div class="vj-table-more">{len(records) - _TABLE_ROWS} more rows: see the raw '
            "view</div>") if len(records) > _TABLE_ROWS else ""
    return f'<table class="vj-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{more}'


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


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



# -- what the panel talks to: a package directory, its artifacts, its example, its identity -----

class _Model:
    """The resolved source: package dir + artifact paths + example text + who it is."""

    def __init__(self, package_dir: Path, artifacts: dict, sample: Any, origin: dict):
        from .package import package_digest, read_manifest

        self.package_dir = Path(package_dir)
        self.artifacts = {str(k): str(v) for k, v in artifacts.items()}
        manifest = read_manifest(self.package_dir)
        self.class_name = manifest["class_name"]
        self.digest = package_digest(manifest)
        self.origin = origin
        example = self.package_dir / "input_example.json"
        if sample is not None:
            self.example_text = json.dumps(to_json_compatible(sample, root="sample_input"),
                                           indent=2, ensure_ascii=False)
        elif example.exists():
            self.example_text = example.read_text()
        else:
            self.example_text = ""

    def info_html(self) -> str:
        parts = [f"<b class=\"vj-class\">{html.escape(self.class_name)}</b>"]
        parts += [f'<span class="vj-{k}">{html.escape(k)} {html.escape(str(v))}</span>'
                  for k, v in self.origin.items() if v not in (None, "")]
        parts.append(f'<span class="vj-digest" title="{self.digest}">package '
                     f"{self.digest[:12]}</span>")
        return " · ".join(parts)

    def snippets(self, text: str) -> tuple[str, str]:
        """("copy as Python", "copy as curl") for the request `text`."""
        body = text if text.strip() else "null"
        raw_ok = '"""' not in body and not body.endswith(('"', "\\"))
        literal = f'r"""{body}"""' if raw_ok else repr(body)
        python = (f"import json\nfrom verta_jupyter.worker import WorkerClient\n\n"
                  f"with WorkerClient({str(self.package_dir)!r}, artifacts={self.artifacts!r}) as model:\n"
                  f"    output = model.predict(json.loads({literal}))\nprint(output)\n")
        url = os.environ.get("VERTA_ENDPOINT_URL", "http://127.0.0.1:8080/predict")
        curl = (f"curl -sS -X POST {url!s} \\\n  -H 'Content-Type: application/json' "
                f"\\\n  --data-binary @- <<'JSON'\n{body}\nJSON\n")
        return python, curl


def _resolve_source(source: Any, tmp: Path, artifacts: dict | None, sample: Any,
                    namespace: dict | None) -> _Model:
    artifacts = dict(artifacts or {})
    if isinstance(source, (str, os.PathLike)):
        return _Model(Path(source), artifacts, sample, {"folder": str(source)})
    if isinstance(source, type):
        from .capture import capture_model

        target = capture_model(source, namespace).save(tmp / "model")
        return _Model(target, artifacts, sample, {"captured from": "the live class"})
    if hasattr(source, "model_package_dir"):
        package_dir = Path(source.model_package_dir())
    elif hasattr(source, "download_model"):
        package_dir = Path(source.download_model(str(tmp / "model")))
    else:
        raise TypeError(f"PredictPanel cannot use a {type(source).__name__}: pass a run, a model "
                        "version, a model package directory, or a model class")
    from .package import read_manifest

    keys = [k for k in read_manifest(package_dir).get("artifact_keys", []) if k not in artifacts]
    if keys and hasattr(source, "fetch_artifacts"):
        artifacts.update(source.fetch_artifacts(keys))
    return _Model(package_dir, artifacts, sample, _origin(source))


def _origin(source: Any) -> dict:
    """Who the model belongs to, for the identity line: run name and id, or model and version."""
    if hasattr(source, "registered_model"):
        return {"model": getattr(source.registered_model, "name", None),
                "version": getattr(source, "version", None), "id": getattr(source, "id", None)}
    return {"run": getattr(source, "name", None), "id": getattr(source, "id", None)}
