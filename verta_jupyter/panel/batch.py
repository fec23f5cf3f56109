"""The panel's batch mode: a CSV file in, one prediction per row, a table out, a CSV to download.

Each CSV row becomes a JSON object (column -> value, empty cells null). "One call per row"
sends each object on its own (a model whose sample is one object); "one call with all rows"
sends the list (a model that takes a table, e.g. a DataFrame). Predictions are added to the
rows as columns; a failing row gets its error in an `error` column and the others still run,
except after a timeout: each further row would wait as long (1,000 rows x 30 s is eight hours
of a busy kernel), so the rest are marked not sent. Every call goes through `predict_json`, the exact path of the Predict button.
"""
from __future__ import annotations

import html
import io
import json
import time
from typing import Any, Callable

import ipywidgets as widgets

from ..errors import WorkerTimeoutError
from ..jsonify.output import to_json_compatible
from .render import csv_text, download_html, duration, table_html

__all__ = ["BatchSection", "csv_records", "joined"]

MODES = (("One call per row", "rows"), ("One call with all rows", "table"))
INTRO = ("Predict many inputs at once: choose a CSV file with a header row. Each row becomes a "
         "JSON object (column → value); the predictions are added as columns, shown below and "
         "ready to download as CSV.")


def csv_records(content: bytes, limit: int) -> tuple[list[dict], str]:
    """CSV bytes -> (records, a note saying how many rows and columns were kept)."""
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(content), nrows=limit + 1)
    total = len(frame)
    if total > limit:
        frame = frame.iloc[:limit]
        lines = max(content.count(b"\n") - 1 + (not content.endswith(b"\n")), limit + 1)
        note = f"first {limit} of about {lines} rows kept (row cap {limit})"
    else:
        note = f"{total} row{'' if total == 1 else 's'}"
    columns = frame.shape[1]
    return to_json_compatible(frame), f"{note} × {columns} column{'' if columns == 1 else 's'}"


def joined(rows: list[dict], outputs: list[Any]) -> list[dict]:
    """Each row with its prediction: an object's keys as columns (`k (predicted)` when the row
    has a different `k` already; an echoed input column is not repeated), anything else in a
    `prediction` column."""
    out = []
    for row, output in zip(rows, outputs):
        merged = dict(row)
        if isinstance(output, dict):
            for key, value in output.items():
                if key in row and row[key] == value:
                    continue  # the input echoed back (DataFrame.assign): one column is enough
                merged[f"{key} (predicted)" if key in row else key] = value
        else:
            merged["prediction"] = output
        out.append(merged)
    return out


class BatchSection(widgets.VBox):
    """Upload -> Predict all rows -> table of predictions -> download link."""

    def __init__(self, predict_json: Callable[[str], str], *, row_limit: int = 1000,
                 mode: str = "rows"):
        self.predict_json, self.row_limit = predict_json, row_limit
        self.rows: list[dict] = []
        self.results: list[dict] = []  # the rows with their predictions, after a run
        self.file_name = ""
        self.upload = _css(widgets.FileUpload(accept=".csv", multiple=False,
                                              description="Choose CSV file", icon="upload",
                                              layout=widgets.Layout(width="auto")), "vj-csv")
        self.mode = _css(widgets.ToggleButtons(options=MODES, value=mode,
                                               style={"button_width": "auto"}), "vj-batch-mode")
        self.run_button = _css(widgets.Button(description="Predict all rows", icon="play",
                                              disabled=True), "vj-batch-run")
        self.info = _css(widgets.HTML("No file chosen yet."), "vj-csv-preview")
        self.table = _css(widgets.HTML(), "vj-batch-result")
        self.download = _css(widgets.HTML(), "vj-batch-download")
        self.error = _css(widgets.HTML(), "vj-batch-error")
        super().__init__(children=[
            widgets.HTML(f'<div class="vj-batch-intro">{html.escape(INTRO)}</div>'),
            widgets.HBox([self.upload, self.run_button]), self.mode, self.info, self.error,
            self.table, self.download])
        self.add_class("vj-batch")
        self.upload.observe(self._on_upload, names="value")
        self.run_button.on_click(lambda _: self.run())

    # -- steps ------------------------------------------------------------------------------------

    def load(self, name: str, content: bytes) -> None:
        """Read a CSV file's rows (shown as a preview) and enable the run."""
        self.rows, self.results, self.file_name = [], [], name
        self.table.value = self.download.value = self.error.value = ""
        try:
            rows, note = csv_records(content, self.row_limit)
        except Exception as exc:  # noqa: BLE001 - a bad file is shown, not raised
            self.info.value = ""
            self.error.value = _error(f"CSV could not be read: {name}: {type(exc).__name__}: {exc}")
            self.run_button.disabled = True
            return
        self.rows = rows
        self.info.value = (f"<b>{html.escape(name)}</b>: {html.escape(note)}. Preview of the "
                           "input; Predict all rows adds the predictions:") + table_html(rows[:5])
        self.run_button.disabled = not rows
        self.run_button.description = f"Predict all {len(rows)} rows"

    def run(self) -> None:
        """Predict every row (per the mode), show the joined table and a download link."""
        if not self.rows:
            return
        started = time.perf_counter()
        self.run_button.disabled = True
        self.error.value = ""
        try:
            outputs, failed = (self._per_row() if self.mode.value == "rows" else self._all_at_once())
        finally:
            self.run_button.disabled = False
            self.run_button.description = f"Predict all {len(self.rows)} rows"
        if outputs is None:
            return
        self.results = joined(self.rows, outputs)
        took = duration(time.perf_counter() - started)
        self.info.value = (f"<b>{html.escape(self.file_name)}</b>: {len(self.rows)} rows predicted "
                           f"in {took}" + (f", <b>{failed} failed</b> (see the error column)"
                                           if failed else "") + ".")
        self.table.value = table_html(self.results, "in the downloaded CSV")
        stem = self.file_name.rsplit(".", 1)[0] or "rows"
        self.download.value = download_html(f"{stem}-predictions.csv", self.csv())

    def csv(self) -> str:
        """The last run's rows with their predictions, as CSV text (what the link downloads)."""
        return csv_text(self.results)

    # -- the two modes ----------------------------------------------------------------------------

    def _per_row(self) -> tuple[list[Any], int]:
        outputs, failed = [], 0
        for number, row in enumerate(self.rows, 1):
            self.run_button.description = f"Predicting {number}/{len(self.rows)}..."
            try:
                outputs.append(json.loads(self.predict_json(json.dumps(row))))
            except Exception as exc:  # noqa: BLE001 - one bad row must not stop the batch
                failed += 1
                outputs.append({"error": _one_line(exc)})
                if isinstance(exc, WorkerTimeoutError):  # ...but a hung model must
                    rest = len(self.rows) - number
                    outputs += [{"error": f"not sent: row {number} timed out"} for _ in range(rest)]
                    return outputs, failed + rest
        return outputs, failed

    def _all_at_once(self) -> tuple[list[Any] | None, int]:
        self.run_button.description = f"Predicting {len(self.rows)} rows..."
        try:
            output = json.loads(self.predict_json(json.dumps(self.rows)))
        except Exception as exc:  # noqa: BLE001 - shown in the section
            self.error.value = _error(_one_line(exc))
            return None, 0
        if not isinstance(output, list) or len(output) != len(self.rows):
            self.error.value = _error(
                f"the model returned {type(output).__name__} "
                f"{'of ' + str(len(output)) + ' items ' if isinstance(output, list) else ''}for "
                f"{len(self.rows)} rows, so its answer cannot be matched to the rows; try "
                "One call per row")
            return None, 0
        return output, 0

    def _on_upload(self, change: dict) -> None:
        files = change["new"]
        if not files:
            return
        upload = files[0]
        self.load(upload["name"], bytes(upload["content"]))


def _css(widget, css: str):
    widget.add_class(css)
    return widget


def _error(text: str) -> str:
    return f'<div style="color:var(--jp-error-color1,#b00020)">{html.escape(text)}</div>'


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, WorkerTimeoutError):  # a table cell: short, and no worker internals
        return f"no answer within {exc.seconds:g} s (the model's worker was stopped)"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
