"""What the predict panel shows, as HTML text: results, tables, errors, history, snippets, timing.

Pure functions of their arguments (no widgets), so the panel only decides *when* to show
something and this module decides *how* it looks. Every element carries its `vj-*` CSS class.
"""
from __future__ import annotations

import html
import json
from typing import Any

from .predictors import Predictor

TABLE_ROWS = 200  # rows shown in an HTML table; the raw view always has everything
PRETTY_CHARS = 200_000

KIND_TITLES = {
    "invalid-json": "Invalid JSON", "input": "Input does not fit the model",
    "model": "The model raised an exception", "output": "Output is not JSON-compatible",
    "crash": "The worker crashed", "timeout": "The model timed out",
    "load": "The model could not be built", "csv": "CSV could not be read", "error": "Error",
}


def output_html(text: str, raw: bool) -> str:
    """The model's JSON output: exact text (raw), a table for records, else pretty JSON."""
    if raw:
        return f'<pre class="vj-raw">{html.escape(text)}</pre>'
    output = json.loads(text)
    if is_records(output):
        return table_html(output)
    pretty = json.dumps(output, indent=2, ensure_ascii=False)
    if len(pretty) > PRETTY_CHARS:
        pretty = pretty[:PRETTY_CHARS] + "\n... (truncated; the raw view has it all)"
    return f'<pre class="vj-pretty">{html.escape(pretty)}</pre>'


def error_html(kind: str, exc: BaseException) -> str:
    """The error box: the kind's title, the message, and the model's traceback folded away."""
    trace = getattr(exc, "model_traceback", "") or ""
    details = (f"<details class=\"vj-traceback\"><summary>Traceback (the model's frames)"
               f"</summary><pre>{html.escape(trace)}</pre></details>") if trace else ""
    return (f'<div class="vj-error-box vj-error-{kind}" style="color:#b00020">'
            f"<b>{KIND_TITLES[kind]}</b>: "
            f"<span class=\"vj-error-message\">{html.escape(str(exc))}</span>"
            f"{details}</div>")


def status_html(text: str, state: str = "idle") -> str:
    """The status line; `state` (idle, busy, ok, error) becomes its CSS class."""
    return f'<span class="vj-status-{state}">{html.escape(text)}</span>'


def snippets_html(python: str, curl: str) -> str:
    """The "copy as Python" and "copy as curl" folds."""
    return ("<details><summary>Copy as Python</summary>"
            f'<pre class="vj-snippet-python">{html.escape(python)}</pre></details>'
            "<details><summary>Copy as curl</summary>"
            f'<pre class="vj-snippet-curl">{html.escape(curl)}</pre></details>')


def history_label(entry: dict) -> str:
    """One history button's text: time, duration, outcome, the input's start."""
    timing = duration(entry["seconds"]) if entry["seconds"] is not None else "-"
    outcome = "ok" if entry["kind"] is None else KIND_TITLES[entry["kind"]]
    summary = " ".join(entry["input"].split())[:40]
    return f"{entry['at']} {timing} {outcome}: {summary}"


def timing_text(predictor: Predictor) -> str:
    """Round trip, time inside predict, load time and where the model runs."""
    p = predictor
    parts = [f"{duration(p.last_seconds)} round trip"]
    if p.last_model_seconds is not None:
        parts.append(f"predict {duration(p.last_model_seconds)}")
    if p.load_seconds is not None:
        parts.append(f"model loaded in {p.load_seconds:.2f} s")
    parts.append(p.where)
    return " · ".join(parts)


def duration(seconds: float) -> str:
    """Seconds in the unit that reads best: s, ms or µs."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def is_records(value: Any) -> bool:
    """Whether `value` is a non-empty list of JSON objects (a table's records)."""
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def table_html(records: list[dict]) -> str:
    """Records as an HTML table of the first TABLE_ROWS rows, columns in first-seen order."""
    columns: dict[str, None] = {}
    for record in records[:TABLE_ROWS]:
        columns.update(dict.fromkeys(record))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in records[:TABLE_ROWS])
    more = (f'<div class="vj-table-more">{len(records) - TABLE_ROWS} more rows: see the raw '
            "view</div>") if len(records) > TABLE_ROWS else ""
    return f'<table class="vj-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{more}'


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
