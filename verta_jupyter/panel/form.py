"""The panel's input form: one field per key of a JSON-object sample, in step with the JSON text.

So that someone who does not write JSON can try the model: a text box for a string, a number
box for a number, a checkbox for true/false, and a JSON box for anything nested; for a sample
that is a list of records (a DataFrame model), a small table of such fields. The form only
ever produces JSON the editor could hold; the panel keeps the two in step (form -> text on every
edit, text -> form whenever the text has the form's keys and types).
"""
from __future__ import annotations

import html
import json
from typing import Any, Callable

import ipywidgets as widgets

__all__ = ["InputForm", "RecordsForm", "form_fits", "records_fit"]

MAX_FIELDS = 40  # past this, a form is a worse editor than the JSON text
LABEL_CHARS = 28  # a field name longer than this wraps onto a second line


def form_fits(example: Any) -> bool:
    """Whether a form can stand for inputs shaped like `example` (a flat-ish JSON object)."""
    return (isinstance(example, dict) and 0 < len(example) <= MAX_FIELDS
            and all(isinstance(k, str) for k in example))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "text"
    return "json"  # null, lists, objects: edited as JSON text


def _fits(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "text":
        return isinstance(value, str)
    return True


def _field(kind: str, value: Any) -> widgets.Widget:
    layout = widgets.Layout(width="auto", flex="1 1 auto")
    if kind == "bool":
        return widgets.Checkbox(value=value, indent=False)
    if kind == "int":
        return widgets.IntText(value=value, continuous_update=True, layout=layout)
    if kind == "float":
        return widgets.FloatText(value=value, continuous_update=True, layout=layout)
    if kind == "text":
        return widgets.Text(value=value, continuous_update=True, layout=layout)
    return widgets.Text(value=json.dumps(value, ensure_ascii=False), continuous_update=True,
                        placeholder="JSON", layout=layout)


class InputForm(widgets.VBox):
    """Fields named after the example's keys; `value()` is the JSON object they spell."""

    def __init__(self, example: dict, on_change: Callable[[dict], None]):
        self.kinds = {key: _kind(value) for key, value in example.items()}
        self.fields = {key: _field(self.kinds[key], value) for key, value in example.items()}
        self.note = widgets.HTML()
        self.note.add_class("vj-form-note")
        rows = []
        names = {key: key + (" (JSON)" if self.kinds[key] == "json" else "") for key in example}
        # one label width for every row, so the fields line up in a column; a name longer
        # than LABEL_CHARS wraps (stylesheet) rather than pushing its field out of line
        width = f"{min(max(map(len, names.values())), LABEL_CHARS) + 2}ch"
        for key, field in self.fields.items():
            field.add_class("vj-form-field")
            field.add_class(f"vj-form-{self.kinds[key]}")
            label = widgets.Label(names[key], tooltip=names[key], layout=widgets.Layout(
                width=width, min_width="8em", flex="0 0 auto"))
            label.add_class("vj-form-label")
            row = widgets.HBox([label, field], layout=widgets.Layout(width="100%"))
            row.add_class("vj-form-row")
            rows.append(row)
        super().__init__(children=[*rows, self.note])
        self.add_class("vj-form")
        self._on_change = on_change
        self._quiet = False  # set while the text drives the fields, so they do not echo back
        for field in self.fields.values():
            field.observe(self._changed, names="value")

    def value(self) -> dict:
        """The object the fields spell; ValueError naming the key whose JSON box is not JSON."""
        out = {}
        for key, field in self.fields.items():
            if self.kinds[key] != "json":
                out[key] = field.value
                continue
            try:
                out[key] = json.loads(field.value)
            except ValueError:
                raise ValueError(f"'{key}' is not JSON: {field.value[:40]!r}") from None
        return out

    def show(self, data: Any) -> bool:
        """Put `data` into the fields if it has exactly the form's keys and types; say whether."""
        fits = (isinstance(data, dict) and set(data) == set(self.fields)
                and all(_fits(self.kinds[k], v) for k, v in data.items()))
        if fits:
            self._quiet = True
            try:
                for key, value in data.items():
                    field = self.fields[key]
                    field.value = (json.dumps(value, ensure_ascii=False)
                                   if self.kinds[key] == "json" else value)
            finally:
                self._quiet = False
        self.note.value = "" if fits else (
            "<i>The JSON tab holds an input with other keys or types than this form; editing a "
            "field here replaces it with the form's values.</i>")
        return fits

    def _changed(self, _change: dict) -> None:
        if self._quiet:
            return
        try:
            data = self.value()
        except ValueError as exc:
            self.note.value = f'<span style="color:var(--jp-error-color1,#b00020)">{html.escape(str(exc))}</span>'
            return
        self.note.value = ""
        self._on_change(data)


MAX_ROWS, MAX_COLUMNS = 50, 12  # past this, the JSON text (or the CSV batch) is the better editor


def records_fit(example: Any) -> bool:
    """Whether a small table editor can stand for inputs like `example`: a list of objects with
    the same keys, each column of one type (a DataFrame's records)."""
    if not (isinstance(example, list) and 0 < len(example) <= MAX_ROWS):
        return False
    if not all(isinstance(r, dict) and r for r in example):
        return False
    columns = list(example[0])
    if len(columns) > MAX_COLUMNS or any(list(r) != columns for r in example):
        return False
    kinds = _column_kinds(example)
    return all(kinds[c] != "json" and _fits(kinds[c], r[c]) for r in example for c in columns)


def _column_kinds(records: list[dict]) -> dict[str, str]:
    """Each column's field kind over every row: ints and floats mixed make a float column."""
    kinds = {}
    for column in records[0]:
        seen = {_kind(r.get(column)) for r in records}
        kinds[column] = "float" if seen == {"int", "float"} else _kind(records[0][column])
    return kinds


class RecordsForm(widgets.VBox):
    """A small table editor: one row of typed fields per record, rows added and removed."""

    def __init__(self, example: list[dict], on_change: Callable[[list], None]):
        self.columns = list(example[0])
        self.kinds = _column_kinds(example)
        self.rows: list[dict[str, widgets.Widget]] = []
        self.grid = widgets.GridBox(layout=widgets.Layout(
            grid_template_columns=" ".join(["minmax(6em, 1fr)"] * len(self.columns) + ["auto"]),
            grid_gap="2px 6px"))
        self.add_button = widgets.Button(description="Add row", icon="plus")
        self.add_button.add_class("vj-records-add")
        self.add_button.on_click(lambda _: self._add_row())
        self.note = widgets.HTML()
        self.note.add_class("vj-form-note")
        super().__init__(children=[self.grid, self.add_button, self.note])
        self.add_class("vj-form")
        self.add_class("vj-records")
        self._on_change = on_change
        self._quiet = False
        self._rebuild(example)

    def value(self) -> list[dict]:
        return [{c: row[c].value for c in self.columns} for row in self.rows]

    def show(self, data: Any) -> bool:
        """Put `data` into the table if it has the table's columns and types; say whether."""
        fits = (isinstance(data, list) and len(data) <= MAX_ROWS
                and all(isinstance(r, dict) and list(r) == self.columns
                        and all(_fits(self.kinds[c], r[c]) for c in self.columns) for r in data))
        if fits:
            self._quiet = True
            try:
                self._rebuild(data)
            finally:
                self._quiet = False
        self.note.value = "" if fits else (
            "<i>The JSON tab holds an input with other columns or types than this table; editing "
            "a cell here replaces it with the table's rows.</i>")
        return fits

    def _rebuild(self, records: list[dict]) -> None:
        if len(records) != len(self.rows):
            self.rows = [self._new_row(r) for r in records]
            self._lay_out()
            return
        for row, record in zip(self.rows, records):
            for column in self.columns:
                row[column].value = record[column]

    def _new_row(self, record: dict) -> dict[str, widgets.Widget]:
        row = {c: _field(self.kinds[c], record[c]) for c in self.columns}
        for field in row.values():
            field.add_class("vj-records-cell")
            field.observe(self._changed, names="value")
        return row

    def _lay_out(self) -> None:
        header = [widgets.HTML(f"<b>{html.escape(c)}</b>") for c in self.columns] + [widgets.HTML()]
        cells: list[widgets.Widget] = list(header)
        for index, row in enumerate(self.rows):
            remove = widgets.Button(icon="trash", tooltip="Remove this row",
                                    layout=widgets.Layout(width="32px"),
                                    disabled=len(self.rows) == 1)
            remove.add_class("vj-records-remove")
            remove.on_click(lambda _, i=index: self._remove_row(i))
            cells += [row[c] for c in self.columns] + [remove]
        self.grid.children = cells

    def _add_row(self) -> None:
        if len(self.rows) >= MAX_ROWS:
            return
        last = {c: self.rows[-1][c].value for c in self.columns}
        self.rows.append(self._new_row(last))
        self._lay_out()
        self._changed(None)

    def _remove_row(self, index: int) -> None:
        if len(self.rows) > 1:
            del self.rows[index]
            self._lay_out()
            self._changed(None)

    def _changed(self, _change: Any) -> None:
        if not self._quiet:
            self.note.value = ""
            self._on_change(self.value())
