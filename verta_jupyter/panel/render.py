"""What the predict panel shows, as HTML text: results, tables, errors, history, snippets, timing.

Pure functions of their arguments (no widgets), so the panel only decides *when* to show
something and this module decides *how* it looks. Every element carries its `vj-*` CSS class.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from typing import Any

from .predictors import Predictor

TABLE_ROWS = 200  # rows shown in an HTML table; the raw view always has everything
WIDE_COLUMNS = 10  # from this many columns a table says its shape (the rest may be off-screen)
PRETTY_CHARS = 200_000

KIND_TITLES = {
    "invalid-json": "Invalid JSON", "input": "Input does not fit the model",
    "model": "The model raised an exception", "output": "Output is not JSON-compatible",
    "crash": "The worker crashed", "timeout": "The model timed out",
    "load": "The model could not be built", "csv": "CSV could not be read", "error": "Error",
}


# Scoped to the panel. Widget HTML is not inside Lab's `.jp-RenderedHTMLCommon`, so nothing
# styles our tables and lists unless we do; Notebook 7 and VS Code use the same widget DOM.
STYLE = """<style>
.vj-panel .vj-input, .vj-panel .vj-input textarea { box-sizing: border-box; max-width: 100%; }
.vj-panel .vj-input { width: auto; align-self: stretch; }
.vj-panel .vj-history-title { margin-top: 6px; font-weight: 600; }
.vj-panel .vj-history { border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 2px;
  max-height: 14em; overflow-y: auto; }
.vj-panel .vj-history:empty { display: none; }
.vj-panel button.vj-history-item { width: 100%; height: auto; min-height: 24px; margin: 0;
  padding: 2px 8px; text-align: left; justify-content: flex-start; background: transparent;
  border: none; border-bottom: 1px solid var(--jp-border-color3, #eee); box-shadow: none;
  font-family: var(--jp-code-font-family, monospace); font-size: 12px;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.vj-panel button.vj-history-item:hover { background: var(--jp-layout-color2, #f0f0f0); }
/* layout colours follow the theme (brand-color3 is light in the dark theme too: white text on
   pale blue); the inset bar marks the restored entry in any theme */
.vj-panel button.vj-history-item.vj-history-current { background: var(--jp-layout-color3, #e0e0e0);
  box-shadow: inset 3px 0 0 var(--jp-brand-color1, #1976d2); }
.vj-panel .vj-stale { opacity: 0.45; }
.vj-panel .vj-stale-note { color: var(--jp-warn-color0, #9a6700); font-size: 12px; margin: 2px 0; }
.vj-panel .vj-form-row .vj-form-label { min-width: 8em; white-space: normal; overflow-wrap: anywhere;
  height: auto; line-height: 1.3; align-self: center; }
.vj-panel .vj-batch-fold { margin-top: 8px; }
.vj-panel .vj-batch-intro { line-height: 1.4; margin-bottom: 4px; }
/* Long values scroll in their own box: a 40-column table was cut at the panel's edge with
   no way to see the rest, and a long answer or traceback pushed everything below off-screen. */
.vj-panel pre.vj-pretty, .vj-panel pre.vj-raw, .vj-panel .vj-traceback pre {
  max-height: 24em; overflow: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
.vj-panel .vj-table-scroll { max-width: 100%; max-height: 32em; overflow: auto; }
/* flex items grow to their content's width unless allowed to shrink: without this the scroll
   box above was as wide as its table, and the panel clipped it */
.vj-panel .widget-html, .vj-panel .widget-html-content { min-width: 0; max-width: 100%; }
.vj-panel .vj-error-box { overflow-wrap: anywhere; line-height: 1.4; }
.vj-panel pre.vj-error-where { white-space: pre; overflow-x: auto; max-width: 100%; }
</style>"""

_CELL = "border:1px solid var(--jp-border-color2,#ccc);padding:3px 8px;"
_TABLE = "border-collapse:collapse;font-size:12px;margin:4px 0;"


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


def error_html(kind: str, exc: BaseException, package_dir: Any = None, source: str = "",
               message: str | None = None) -> str:
    """The error box, said once: the kind's title, the message (`message` rewords `exc`'s for
    the panel), for invalid JSON the line with a caret, and the model's traceback (paths shown
    relative to the package) folded away."""
    trace = short_paths(getattr(exc, "model_traceback", "") or "", package_dir)
    details = (f"<details class=\"vj-traceback\"><summary>Traceback (the model's frames)"
               f"</summary><pre>{html.escape(trace)}</pre></details>") if trace else ""
    where = ""
    line = getattr(exc, "line", 0)
    if kind == "invalid-json" and source and line:
        text = source.splitlines()[line - 1] if line <= len(source.splitlines()) else ""
        excerpt, caret = caret_excerpt(text, max(getattr(exc, "column", 1), 1))
        where = (f'<pre class="vj-error-where" style="margin:2px 0">{html.escape(excerpt)}\n'
                 f"{' ' * caret}^</pre>")
    message = _without_title(kind, str(exc) if message is None else message)
    if trace and len(message) > MESSAGE_CHARS:  # said once: the traceback's last line has it all
        message = message[:MESSAGE_CHARS - 1] + "… (the whole message ends the traceback)"
    return (f'<div class="vj-error-box vj-error-{kind}" style="color:var(--jp-error-color1,#b00020)">'
            f"<b>{KIND_TITLES[kind]}</b>: "
            f"<span class=\"vj-error-message\">{html.escape(message)}</span>"
            f"{where}{details}</div>")


EXCERPT_CHARS = 100
MESSAGE_CHARS = 300


def caret_excerpt(text: str, column: int) -> tuple[str, int]:
    """(the part of `text` to show, the caret's offset in it): the line around 1-based
    `column`, cut with ellipses, so the caret points at the spot however long the line is
    (a one-line JSON document of 10,000 characters wrong at column 9,000)."""
    start = max(0, column - 1 - EXCERPT_CHARS // 2) if len(text) > EXCERPT_CHARS else 0
    excerpt = text[start:start + EXCERPT_CHARS]
    caret = min(column - 1, len(text)) - start
    if start:
        excerpt, caret = "…" + excerpt, caret + 1
    if start + EXCERPT_CHARS < len(text):
        excerpt += "…"
    return excerpt, caret


def timeout_message(class_name: str, exc: BaseException) -> str:
    """A timeout in the panel's words: the worker's own message names WorkerClient, which a
    panel user never made; the remedy here is the panel's timeout."""
    seconds = getattr(exc, "seconds", 0) or 0
    within = f" within {seconds:g} s" if seconds else " in time"
    return (f"{class_name} did not answer{within}; its worker process was stopped and the next "
            "Predict starts a new one. If the model is just slow, open the panel with a longer "
            f"timeout: run.panel(timeout={max(60, int(seconds * 4))}).")


def _without_title(kind: str, message: str) -> str:
    title = KIND_TITLES[kind]
    return message[len(title):].lstrip(" :") if message.lower().startswith(title.lower()) else message


def short_paths(trace: str, package_dir: Any = None) -> str:
    """`File "/cache/…/sha256…/model.py", line 19` -> `File "model.py", line 19`: the package's
    files by the names the user knows (the cache's folder says nothing to them)."""
    if package_dir:
        root = str(package_dir).rstrip("/\\")
        trace = trace.replace(root + "/", "").replace(root + "\\", "")
    return re.sub(r'File "[^"]*[/\\](model\.py|lib[/\\][^"]+)"', r'File "\1"', trace)


# json's messages end where it appends the position ("Unterminated string starting at");
# the panel gives the position as line and column, so each message is completed here.
_JSON_MESSAGES = {
    "Unterminated string starting at": "a string starts here and never ends (a closing \" is missing)",
    "Expecting value": "a value was expected here (a number, a \"string\", true, false, null, [ or {)",
    "Expecting property name enclosed in double quotes": "a key in double quotes was expected here "
                                                          "(JSON has no trailing commas or 'single quotes')",
    "Expecting ',' delimiter": "a comma (or the closing bracket) was expected here",
    "Expecting ':' delimiter": "a colon was expected here, between a key and its value",
    "Extra data": "there is more text after the end of the JSON value",
    "Invalid control character at": "a raw control character (a tab or a line break) is inside a "
                                    "string; write it as \\t or \\n",
    "Invalid \\escape": "this backslash escape is not JSON (use \\\\, \\\", \\n, \\t or \\uXXXX)",
}


def json_error_message(msg: str) -> str:
    """json's message, complete (never cut off before the position it would have appended)."""
    if msg in _JSON_MESSAGES:
        return _JSON_MESSAGES[msg]
    return msg[:-3] if msg.endswith(" at") else msg


def status_html(text: str, state: str = "idle") -> str:
    """The status line; `state` (idle, busy, ok, error) becomes its CSS class."""
    return f'<span class="vj-status-{state}">{html.escape(text)}</span>'


def snippets_html(python: str, curl: str) -> str:
    """The "copy as Python" and "copy as curl" folds."""
    return ("<details><summary>Copy as Python</summary>"
            f'<pre class="vj-snippet-python">{html.escape(python)}</pre></details>'
            "<details><summary>Copy as curl</summary>"
            f'<pre class="vj-snippet-curl">{html.escape(curl)}</pre></details>')


HISTORY_INPUT_CHARS = 60


def history_label(entry: dict) -> str:
    """One history row: status icon, time, latency, the input on one line (cut with an ellipsis),
    and for a failure what failed."""
    timing = duration(entry["seconds"]) if entry["seconds"] is not None else "–"
    icon = "✓" if entry["kind"] is None else "✗"
    summary = " ".join(entry["input"].split())
    if len(summary) > HISTORY_INPUT_CHARS:
        summary = summary[:HISTORY_INPUT_CHARS - 1] + "…"
    failed = "" if entry["kind"] is None else f" · {KIND_TITLES[entry['kind']].lower()}"
    return f"{icon} {entry['at']} · {timing:>8}{failed} · {summary}"


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


def columns_of(records: list[dict]) -> list[str]:
    """Column names in first-seen order over the shown rows."""
    columns: dict[str, None] = {}
    for record in records[:TABLE_ROWS]:
        columns.update(dict.fromkeys(record))
    return list(columns)


def table_html(records: list[dict], more_hint: str = "see the raw view") -> str:
    """Records as a table that reads like pandas' own HTML: a row index, borders, bold headers,
    numbers right-aligned; the first TABLE_ROWS rows, columns in first-seen order."""
    columns = columns_of(records)
    head = f'<th style="{_CELL}"></th>' + "".join(
        f'<th style="{_CELL}text-align:right">{html.escape(str(c))}</th>' for c in columns)
    rows = "".join(
        f'<tr><th style="{_CELL}text-align:right">{index}</th>'
        + "".join(_td(r.get(c)) for c in columns) + "</tr>"
        for index, r in enumerate(records[:TABLE_ROWS]))
    more = (f'<div class="vj-table-more">{len(records) - TABLE_ROWS} more rows: {more_hint}'
            "</div>") if len(records) > TABLE_ROWS else ""
    if len(columns) >= WIDE_COLUMNS:  # overlay scrollbars (macOS, Chromium) hide that it scrolls
        shape = f"{len(records)} row{'' if len(records) == 1 else 's'}"
        more += (f'<div class="vj-table-shape">{shape} × {len(columns)} columns; scroll the table '
                 "sideways for the rest</div>")
    # the scroll box keeps a wide table's last columns reachable inside the panel
    return (f'<div class="vj-table-scroll"><table class="vj-table" style="{_TABLE}"><thead>'
            f"<tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>{more}")


def _td(value: Any) -> str:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    align = "right" if number else "left"
    return f'<td style="{_CELL}text-align:{align}">{html.escape(cell_text(value))}</td>'


def cell_text(value: Any) -> str:
    """A value as a table cell shows it: strings bare, null empty, the rest as JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def csv_text(records: list[dict]) -> str:
    """Records as CSV text (every column, every row), for the batch download."""
    out = io.StringIO()
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: cell_text(v) for k, v in record.items()})
    return out.getvalue()


def download_html(filename: str, text: str) -> str:
    """A link that saves `text` as `filename` in the browser (a data: URL; no server needed)."""
    data = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return (f'<a class="vj-download" download="{html.escape(filename)}" '
            f'href="data:text/csv;charset=utf-8;base64,{data}">⬇ Download {html.escape(filename)}'
            f"</a> ({len(text.encode()):,} bytes)")


def stale_note(text: str) -> str:
    return f'<div class="vj-stale-note">{html.escape(text)}</div>'
