"""Readable `repr` and compact notebook HTML for runs, model versions and logged models."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from ..errors import VertaError
from .stores.base import MODEL_KEY, REQUIREMENTS_KEY

if TYPE_CHECKING:
    from .owner import Loggable
    from .stores.base import ArtifactInfo


def _rows(owner: Loggable) -> list[tuple[str, str]]:
    """(label, text) lines describing an owner; store failures become a line, never a crash
    (a repr that raises hides the object it should describe)."""
    rows = [("id", owner.id), *owner._context(), ("store", owner.store_location)]
    try:
        store, kind = owner._store, owner._kind
        for field in ("hyperparameters", "metrics", "attributes"):
            values = store.get_fields(kind, owner.id, field)
            if values:
                rows.append((field, ", ".join(f"{k}={_short(v)}" for k, v in values.items())))
        tags = store.get_fields(kind, owner.id, "tags")
        if tags:
            rows.append(("tags", ", ".join(sorted(tags))))
        artifacts = store.list_artifacts(kind, owner.id)
        user = [a for a in artifacts if a.key not in (MODEL_KEY, REQUIREMENTS_KEY)]
        if user:
            rows.append(("artifacts", ", ".join(f"{a.key} ({a.type}, {human_size(a.size)})"
                                                for a in user)))
        model = [a for a in artifacts if a.key == MODEL_KEY]
        if model:
            rows.append(("model", _model_line(model[0])))
    except VertaError as exc:
        rows.append(("error", str(exc)))
    return rows


def _model_line(info: ArtifactInfo) -> str:
    meta = info.meta
    keys = meta.get("artifact_keys") or []
    extra = f", artifacts: {', '.join(keys)}" if keys else ""
    return f"{meta.get('class_name', '?')} ({human_size(info.size)}{extra})"


def text_summary(owner: Loggable) -> str:
    head = f"{type(owner).__name__} '{owner.name}'"
    return "\n".join([head] + [f"  {label}: {text}" for label, text in _rows(owner)])


def html_summary(owner: Loggable) -> str:
    cells = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(label)}</th>"
                    f"<td style='text-align:left'>{html.escape(text)}</td></tr>"
                    for label, text in _rows(owner))
    return (f"<div class='vj-summary'><b>{html.escape(type(owner).__name__)} "
            f"'{html.escape(owner.name)}'</b><table>{cells}</table></div>")


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class LoggedModel:
    """What `log_model` returns: the stored package's metadata and the validation report."""

    def __init__(self, owner: Loggable, info: ArtifactInfo, report: Any = None):
        self.owner = owner
        self.info = info
        self.report = report

    @property
    def class_name(self) -> str:
        """The logged class's name."""
        return self.info.meta.get("class_name", "?")

    @property
    def digest(self) -> str:
        """sha256 of the stored package (over its files)."""
        return self.info.digest

    def _lines(self) -> list[tuple[str, str]]:
        return [("class", self.class_name), ("logged to", owner_label(self.owner)),
                ("package", f"{human_size(self.info.size)}, {self.info.digest[:19]}"),
                ("artifacts", ", ".join(self.info.meta.get("artifact_keys") or []) or "none"),
                ("requirements", ", ".join(self.info.meta.get("requirements") or []) or "none"),
                *self._warning_lines()]

    def _warning_lines(self) -> list[tuple[str, str]]:
        found = list(getattr(self.report, "warnings", None) or [])
        return [("warnings", "none")] if not found else [
            ("warning", f"[{p.code}] {p.message}") for p in found]

    def __repr__(self) -> str:
        return "LoggedModel\n" + "\n".join(f"  {k}: {v}" for k, v in self._lines())

    def _repr_html_(self) -> str:
        cells = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
                        f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
                        for k, v in self._lines())
        return f"<div class='vj-summary'><b>Logged model</b><table>{cells}</table></div>"


def owner_label(owner: Loggable) -> str:
    return f"{type(owner).__name__} '{owner.name}' (id {owner.id})"
