"""Find the source of a function or class defined in a notebook cell, a shell, or a .py file.

`inspect.getsource` fails for every class defined in a cell (IPython's `__main__` has no
`__file__`), but IPython registers each cell in `linecache`. So we find the cell through a
method's `co_filename`, parse it, and pick the definition by name and line number; the live
definition wins when a name is defined several times.
"""
from __future__ import annotations

import ast
import inspect
import linecache
import re
import sys
import textwrap
import types
from dataclasses import dataclass

from ..catalog import problem
from ..errors import CaptureError


@dataclass(frozen=True)
class Definition:
    """A top-level `def` or `class` statement and where it came from."""

    name: str
    source: str  # dedented statement text, decorators included
    node: ast.stmt  # parsed from `source` (line 1 = first decorator or def line)
    filename: str
    first_line: int  # line of `source`'s first line in its file or cell

    def where(self, relative_line: int = 1) -> str:
        """'cell line 7' (or 'file.py line 7') for a line inside this definition."""
        return f"{describe_file(self.filename)} line {self.first_line + relative_line - 1}"

    @property
    def origin(self) -> str:
        """'cell In[3], line 2' when the execution count is known, else like `where()`."""
        number = cell_number(self.filename)
        return f"cell In[{number}], line {self.first_line}" if number is not None else self.where()


def cell_number(filename: str) -> int | None:
    """The execution count of the cell IPython compiled under `filename`, when known."""
    match = re.match(r"<ipython-input-(\d+)-", filename)
    if match:
        return int(match.group(1))
    ipython = sys.modules.get("IPython")  # never imported here: only asked if already loaded
    shell = ipython.get_ipython() if ipython is not None else None
    numbers = getattr(getattr(shell, "compile", None), "_filename_map", {})  # ipykernel's cells
    return numbers.get(filename)


def describe_file(filename: str) -> str:
    if is_cell_filename(filename):
        return "cell"
    return filename.rsplit("/", 1)[-1]


def is_cell_filename(filename: str) -> bool:
    # terminal: <ipython-input-N-hash>; ipykernel: .../ipykernel_<pid>/<hash>.py
    return filename.startswith("<") or "/ipykernel_" in filename


def locate(obj, *, cell_source: str | None = None, history: list[str] | None = None) -> Definition:
    """The definition statement of a function or class `obj`."""
    obj = inspect.unwrap(obj) if callable(obj) and not isinstance(obj, type) else obj
    name = obj.__name__
    for filename, lines, line in _candidate_sources(obj, cell_source, history):
        found = _find_statement("".join(lines), name, line, isinstance(obj, type))
        if found is not None:
            return _definition(name, found, "".join(lines), filename)
    kind = "class" if isinstance(obj, type) else "function"
    unreadable = sorted({c.co_filename for c in code_objects(obj) if not linecache.getlines(c.co_filename)})
    if "<timed exec>" in unreadable:
        remedy = "Re-run the cell that defines it without %%time (IPython keeps no source for it)."
    elif "<string>" in unreadable:
        remedy = "Define it in a cell or a .py file instead of with exec() (exec keeps no source)."
    else:
        remedy = None
    raise CaptureError(problems=[problem(
        "VJ104", f"cannot find the source of {kind} '{name}'", name=name, remedy=remedy)])


def _candidate_sources(obj, cell_source, history):
    """(filename, lines, line hint) pairs to search, most precise first."""
    for code in code_objects(obj):
        lines = linecache.getlines(code.co_filename)
        if lines:
            yield code.co_filename, lines, code.co_firstlineno
    first = getattr(obj, "__firstlineno__", None)  # Python 3.13+
    if cell_source is not None:
        yield "<cell>", cell_source.splitlines(keepends=True), first
    try:
        filename = inspect.getsourcefile(obj)
    except (TypeError, OSError):
        filename = None
    if filename:
        yield filename, linecache.getlines(filename), first
    if _may_search_history(obj):
        for cell in reversed(history or []):  # the latest cell that defines it wins
            yield "<cell>", cell.splitlines(keepends=True), None


def _may_search_history(obj) -> bool:
    """Only a class with no code of its own may be looked up by name in past cells.

    A class whose methods came from somewhere we cannot read (`exec`, `%%time`) must not be
    matched to another class that merely has the same name. Methods that dataclasses generate
    (`<string>`) are not the user's code.
    """
    generated = hasattr(obj, "__dataclass_fields__")
    return all(generated and code.co_filename == "<string>" for code in code_objects(obj))


def code_objects(obj):
    """Code objects that belong to `obj` (a function, or a class's own methods)."""
    if not isinstance(obj, type):
        obj = inspect.unwrap(obj)
    if isinstance(obj, types.FunctionType):
        yield obj.__code__
        return
    if not isinstance(obj, type):
        return
    for value in vars(obj).values():
        for candidate in (value, getattr(value, "__func__", None), getattr(value, "fget", None)):
            candidate = inspect.unwrap(candidate) if callable(candidate) else candidate
            if isinstance(candidate, types.FunctionType) and candidate.__qualname__.startswith(obj.__qualname__ + "."):
                yield candidate.__code__
                break


def _find_statement(text: str, name: str, line: int | None, want_class: bool):
    """The top-level def/class `name` whose span contains `line` (else the last one)."""
    try:
        tree = ast.parse(textwrap.dedent(text))
    except SyntaxError:
        return None
    kinds = (ast.ClassDef,) if want_class else (ast.FunctionDef, ast.AsyncFunctionDef)
    matches = [n for n in _top_level(tree) if isinstance(n, kinds) and n.name == name]
    if line is not None:
        for node in matches:
            if _first_line(node) <= line <= node.end_lineno:
                return node
        return None
    return matches[-1] if matches else None


def _top_level(tree: ast.Module):
    """Top-level statements, looking inside `if`/`try` blocks as notebooks sometimes do."""
    for node in tree.body:
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            yield from (n for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.ClassDef)))


def _first_line(node) -> int:
    return min([node.lineno, *(d.lineno for d in node.decorator_list)])


def _definition(name: str, node, text: str, filename: str) -> Definition:
    first = _first_line(node)
    lines = textwrap.dedent(text).splitlines(keepends=True)[first - 1: node.end_lineno]
    source = textwrap.dedent("".join(lines))
    parsed = ast.parse(source).body[0]
    return Definition(name=name, source=source, node=parsed, filename=filename, first_line=first)


def classes_in_cell(cell_source: str) -> list[str]:
    """Names of the top-level classes a cell defines, in order."""
    tree = ast.parse(cell_source)
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef)]


def last_cell_assigning(name: str, history: list[str]) -> int | None:
    """Index (= execution count) of the latest history cell that binds `name` at top level."""
    for number in range(len(history) - 1, 0, -1):
        try:
            tree = ast.parse(history[number])
        except SyntaxError:
            continue
        if any(_binds(node, name) for node in tree.body):
            return number
    return None


def _binds(node: ast.stmt, name: str) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return any((a.asname or a.name.split(".")[0]) == name for a in node.names)
    targets = {ast.Assign: lambda n: n.targets, ast.AnnAssign: lambda n: [n.target],
               ast.AugAssign: lambda n: [n.target], ast.For: lambda n: [n.target],
               ast.With: lambda n: [i.optional_vars for i in n.items if i.optional_vars]}
    getter = targets.get(type(node))
    if getter is None:
        return False
    return any(isinstance(t, ast.Name) and t.id == name
               for target in getter(node) for t in ast.walk(target))
