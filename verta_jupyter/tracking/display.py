"""Readable `repr` and compact notebook HTML for runs, model versions and logged models."""
from __future__ import annotations

import html
from typing import Any, Protocol

from .stores.base import ArtifactInfo

Rows = list[tuple[str, str]]  # (label, text) lines, in display order


class Owner(Protocol):
    """What a summary needs to name an owner (a run or a model version)."""

    id: str
    name: str


def model_line(info: ArtifactInfo) -> str:
    """A stored model in one line: class, size, artifact keys."""
    meta = info.meta
    keys = meta.get("artifact_keys") or []
    extra = f", artifacts: {', '.join(keys)}" if keys else ""
    return f"{meta.get('class_name', '?')} ({human_size(info.size)}{extra})"


def text_summary(title: str, rows: Rows) -> str:
    """`title` then one indented `label: text` line per row (a repr)."""
    return "\n".join([title] + [f"  {label}: {text}" for label, text in rows])


def html_summary(title: str, rows: Rows) -> str:
    """`title` in bold over a two-column table (a notebook's rich repr)."""
    cells = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(label)}</th>"
                    f"<td style='text-align:left'>{html.escape(text)}</td></tr>"
                    for label, text in rows)
    return f"<div class='vj-summary'><b>{html.escape(title)}</b><table>{cells}</table></div>"


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


class LoggedModel:
    """What `log_model` returns: the stored package's metadata and the validation report."""

    def __init__(self, owner: Owner, info: ArtifactInfo, report: Any = None):
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

    @property
    def mlflow_model_id(self) -> str | None:
        """The MLflow 3 logged model made with it (an MLflow 3 store), for `models:/<id>`."""
        return self.info.meta.get("mlflow_model_id")

    def _lines(self) -> list[tuple[str, str]]:
        mlflow = [("mlflow model", f"models:/{self.mlflow_model_id}")] if self.mlflow_model_id else []
        return [("class", self.class_name), ("logged to", owner_label(self.owner)),
                ("package", f"{human_size(self.info.size)}, {self.info.digest[:19]}"),
                ("artifacts", ", ".join(self.info.meta.get("artifact_keys") or []) or "none"),
                ("requirements", ", ".join(self.info.meta.get("requirements") or []) or "none"),
                *mlflow, *self._warning_lines()]

    def _warning_lines(self) -> list[tuple[str, str]]:
        found = list(getattr(self.report, "warnings", None) or [])
        return [("warnings", "none")] if not found else [
            ("warning", f"[{p.code}] {p.message}") for p in found]

    def __repr__(self) -> str:
        return text_summary("LoggedModel", self._lines())

    def _repr_html_(self) -> str:
        return html_summary("Logged model", self._lines())


def owner_label(owner: Owner) -> str:
    return f"{type(owner).__name__} '{owner.name}' (id {owner.id})"
