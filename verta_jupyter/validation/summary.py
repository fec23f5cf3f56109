"""The summary `%%verta_model` shows: rich HTML in notebooks, plain text in terminals.

One `ModelSummary` object carries both forms (`_repr_html_` and `__repr__`), so IPython's
display machinery sends a bundle with text/plain and text/html and each front end picks its own.
It shows what will be deployed: the class, what it uses (a tree of who uses what, where each
was defined, what value was captured), pinned requirements, every check with its status, where
it was logged, timing, and the generated model.py itself. Everything it names outlives the
kernel: the package by its id (the one the panel and the store show) and the code that gets it
back, never the temporary folder validation wrote it to.
"""
from __future__ import annotations

import html
from typing import Any

from .secrets import credential_kind, secret_name
from ..package.format import MISSING

__all__ = ["ModelSummary", "dependency_tree"]

_MARK = {"ok": "✓", "warning": "⚠", "error": "✗", "skipped": "–"}
# the theme's own colours where the front end has them (a dark theme's are lighter), GitHub's else
_COLOR = {"ok": "var(--jp-success-color1,#1a7f37)", "warning": "var(--jp-warn-color1,#9a6700)",
          "error": "var(--jp-error-color1,#cf222e)", "skipped": "var(--jp-ui-font-color2,#6e7781)"}


def dependency_tree(captured: Any) -> list[tuple[int, Any]]:
    """(depth, Dependency) rows: what the class uses, then what those use, depth-first.

    `used_by` entries name a scope ("MyModel.predict", "helper"); its first part is the user.
    A dependency reached twice is listed under its first user only.
    """
    deps = list(getattr(captured, "dependencies", []) or [])
    by_user: dict[str, list[Any]] = {}
    for dep in deps:
        for user in dep.used_by or [captured.class_name]:
            by_user.setdefault(user.split(".")[0], []).append(dep)
    rows: list[tuple[int, Any]] = []
    seen = {captured.class_name}

    def visit(user: str, depth: int) -> None:
        for dep in by_user.get(user, []):
            if dep.name in seen:
                continue
            seen.add(dep.name)
            rows.append((depth, dep))
            visit(dep.name, depth + 1)

    visit(captured.class_name, 0)
    rows += [(0, d) for d in deps if d.name not in seen]  # anything not reached from the class
    return rows


def captured_value(captured: Any, dep: Any) -> str:
    """The value frozen at capture, shortened; secret-looking ones are never shown."""
    values = getattr(captured, "values", None) or {}
    if dep.kind not in ("literal", "value") or dep.name not in values:
        return ""
    value = values[dep.name]
    if secret_name(dep.name) or (isinstance(value, str) and credential_kind(value)):
        return "<hidden>"
    text = _stable_repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _stable_repr(value: Any) -> str:
    """repr, with a set's items sorted: a set prints in hash order, which changes between
    kernels, so the same cell's summary differed run to run ({'on', 'a', ...})."""
    if isinstance(value, (set, frozenset)) and value:
        try:
            items = ", ".join(map(repr, sorted(value)))
        except TypeError:  # items of mixed types: no order to give
            return repr(value)
        return f"{{{items}}}" if type(value) is set else f"{type(value).__name__}({{{items}}})"
    return repr(value)


class ModelSummary:
    """What `%%verta_model` validated and logged; displays as HTML or plain text."""

    def __init__(self, report: Any, *, logged_to: str = "", seconds: float | None = None,
                 replaced: str = "", stored: str = "", store: str = "", mlflow_model: str = ""):
        self.report = report
        self.logged_to = logged_to
        self.store = store  # why the store in the headline: "$MLFLOW_TRACKING_URI (...)"
        self.mlflow_model = mlflow_model  # an MLflow 3 logged model's id, when one was made
        self.seconds = report.timings.get("total", 0.0) if seconds is None else seconds
        self.replaced = replaced  # "replaced the model this cell logged at 10:42:07"
        self.stored = stored  # how to get the logged package back ("run.get_model() ...")
        self.package_id = report.package_digest[:12]

    # -- plain text
    def __repr__(self) -> str:
        return "\n".join(self._text_lines())

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))

    def _text_lines(self) -> list[str]:
        r = self.report
        lines = [f"{r.class_name}: {self._headline()}"]
        lines.append(f"sample: {sample_text(r)}")
        lines.append("checks:")
        for c in r.checks:
            lines.append(_cut(f"  {_MARK[c.status]} {c.name:<10} {self._detail(c)}", 110)
                         + _ms(c.seconds, c.status))
        for p in r.problems:
            lines.append(f"  {p}")
        captured = r.captured
        if captured is not None:
            tree = dependency_tree(captured)
            lines.append("uses:" if tree else "uses: nothing outside the class")
            for depth, dep in tree:
                lines.append("  " + "  " * depth + _dep_text(captured, dep))
            lines.append("requirements: " + (", ".join(captured.requirements) or "none (standard library only)"))
            lines.append(f"model.py: {len(captured.source.splitlines())} lines")
        if self._package_text():
            lines.append(f"package: {self._package_text()}")
        lines += [f"{label}: {text}" for label, text in self._store_lines()]
        lines += [f"note: {n}" for n in r.rebuild_notes]
        return lines

    def _detail(self, check: Any) -> str:
        # validation wrote the package to a temporary folder: name it by its durable id instead
        if check.name == "package" and check.status == "ok" and self.package_id:
            return f"model package {self.package_id}, verified"
        return check.detail

    def _package_text(self) -> str:
        if not self.package_id:
            return ""
        if self.logged_to and self.report.ok:
            how = f"; get it back: {self.stored}" if self.stored else ""
            return f"{self.package_id} in the store{how}"
        return f"{self.package_id}, not stored (--no-log)" if self.report.ok else ""

    def _store_lines(self) -> list[tuple[str, str]]:
        """Which store and why; the MLflow 3 logged model, loadable with MLflow's tools."""
        if not (self.logged_to and self.report.ok):
            return []
        lines = [("store chosen by", self.store)] if self.store else []
        if self.mlflow_model:
            lines.append(("mlflow", f"logged model {self.mlflow_model}: "
                                    f"mlflow.pyfunc.load_model('models:/{self.mlflow_model}')"))
        return lines

    def _headline(self) -> str:
        r = self.report
        state = (f"logged to {self.logged_to}" if self.logged_to and r.ok
                 else "validated, not logged (--no-log)" if r.ok else "NOT logged")
        if self.replaced and r.ok:
            state += f"; {self.replaced}"
        return f"{state}; {_counts(len(r.errors), len(r.warnings))}; {self.seconds * 1000:.0f} ms"

    # -- HTML
    def _repr_html_(self) -> str:
        r = self.report
        esc = html.escape
        parts = ['<div class="vj-summary" style="font-family:var(--jp-ui-font-family,sans-serif);'
                 'font-size:13px;line-height:1.45">',
                 f"<div><b>{esc(r.class_name)}</b> — {esc(self._headline())}</div>",
                 f'<div class="vj-sample">sample: <code>{esc(sample_text(r))}</code></div>',
                 self._checks_html()]
        if r.problems:
            parts.append('<ul class="vj-problems" style="margin:4px 0">' + "".join(
                f'<li style="color:{_COLOR["error" if p.is_error else "warning"]}">{esc(str(p))}</li>'
                for p in r.problems) + "</ul>")
        if r.captured is not None:
            parts.append(self._captured_html(r.captured))
        if self._package_text():
            parts.append(f'<div class="vj-package"><b>package</b>: <code>{esc(self._package_text())}</code></div>')
        parts += [f'<div class="vj-{label.split()[0]}"><b>{label}</b>: {esc(text)}</div>'
                  for label, text in self._store_lines()]
        parts += [f'<div class="vj-note">note: {esc(n)}</div>' for n in r.rebuild_notes]
        parts.append("</div>")
        return "".join(parts)

    def _checks_html(self) -> str:
        # every cell states its alignment: Notebook 7's stylesheet right-aligns table cells
        cell = "text-align:left;vertical-align:top;border:none;padding:0 .3em"
        rows = "".join(
            f'<tr class="vj-check vj-{c.status}"><td style="{cell};color:{_COLOR[c.status]}">{_MARK[c.status]}</td>'
            f'<td style="{cell};padding-right:.8em">{html.escape(c.name)}</td>'
            f'<td class="vj-check-detail" style="{cell}">{html.escape(self._detail(c))}</td>'
            f'<td style="{cell};text-align:right;padding-left:.8em;white-space:nowrap">'
            f'{_ms(c.seconds, c.status).strip()}</td></tr>'
            for c in self.report.checks)
        return (f'<table class="vj-checks" style="border-collapse:collapse;margin:4px 0;'
                f'table-layout:auto;width:auto">{rows}</table>')

    def _captured_html(self, captured: Any) -> str:
        esc = html.escape
        tree = "".join(
            f'<li style="margin-left:{depth * 1.2}em;list-style:none">{esc(_dep_text(captured, dep))}</li>'
            for depth, dep in dependency_tree(captured)) or "<li style='list-style:none'>nothing outside the class</li>"
        requirements = esc(", ".join(captured.requirements) or "none (standard library only)")
        source = esc(captured.source)
        lines = len(captured.source.splitlines())
        return (f'<div class="vj-uses"><b>uses</b><ul style="margin:2px 0;padding-left:0.5em">{tree}</ul></div>'
                f'<div class="vj-requirements"><b>requirements</b>: {requirements}</div>'
                f'<details class="vj-model-py"><summary>model.py ({lines} lines): exactly what will be '
                f'deployed</summary><pre style="max-height:30em;overflow:auto">{source}</pre></details>')


def _dep_text(captured: Any, dep: Any) -> str:
    value = captured_value(captured, dep)
    shown = f" = {value}, captured" if value else ""
    return f"{dep.name}{shown} [{dep.kind}: {dep.detail}] from {dep.defined_in}"


def _counts(errors: int, warnings: int) -> str:
    """'no problems found', '1 warning', '2 errors, 1 warning': read aloud, not '0 error(s)'."""
    said = [f"{n} {word}{'' if n == 1 else 's'}" for n, word in ((errors, "error"), (warnings, "warning")) if n]
    return ", ".join(said) or "no problems found"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _ms(seconds: float, status: str) -> str:
    return "" if status == "skipped" else f"  {seconds * 1000:.1f} ms"


def sample_text(report: Any) -> str:
    """The sample round trip as one line, for messages."""
    if report.sample_input is MISSING:
        return "none given (rebuild checked import and construction only)"
    text = f"{_short(report.sample_input)} -> {_short(report.sample_output)}"
    return text


def _short(value: Any) -> str:
    text = "(not run)" if value is MISSING else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
