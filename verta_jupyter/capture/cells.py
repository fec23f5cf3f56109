"""Find the source of a function or class defined in a notebook cell, a shell, or a .py file.

`inspect.getsource` fails for every class defined in a cell (IPython's `__main__` has no
`__file__`), but IPython registers each cell in `linecache`. So we find the cell through a
method's `co_filename`, parse it, and pick the definition by name and line number; the live
definition wins when a name is defined several times.
"""
from __future__ import annotations

import ast
import functools
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
        text = _joined(lines)
        found = _find_statement(text, name, line, isinstance(obj, type))
        if found is not None:
            return _definition(name, found, lines, filename)
    if isinstance(obj, type) and _may_search_history(obj):
        found = _assignment(name, cell_source, history)  # `Point = namedtuple(...)`, `Enum(...)`
        if found is not None:
            return found
    kind = "class" if isinstance(obj, type) else "function"
    unreadable = sorted({c.co_filename for c in code_objects(obj) if not linecache.getlines(c.co_filename)})
    if isinstance(obj, type) and _may_search_history(obj):
        # no methods of its own (or only generated ones): found only by name in the history
        remedy = (f"Define '{name}' in a notebook cell run with history on (or a .py file), or pass "
                  "its cell's text as `cell_source=`: a class with no methods of its own is found "
                  "by name in the cell history, and exec() keeps no source.")
    elif "<timed exec>" in unreadable:
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
            for path in _run_files(cell):  # `%run file.py` defines the file's names here
                yield path, linecache.getlines(path), None
            yield "<cell>", cell.splitlines(keepends=True), None


def _in_a_cell(code) -> bool:
    """Code the user wrote (a cell, a .py file), not code a library generated for the class."""
    filename = code.co_filename
    if filename == "<string>" or not linecache.getlines(filename):
        return False
    return not filename.startswith(tuple({sys.prefix, sys.base_prefix, sys.exec_prefix}))


def _assignment(name: str, cell_source: str | None, history: list[str] | None) -> Definition | None:
    """The latest top-level `name = <call>` in the cells: a class made without a class statement."""
    cells = ([cell_source] if cell_source else []) + list(reversed(history or []))
    for cell in cells:
        tree = parse_cell(cell)
        for node in reversed(tree.body if tree is not None else []):
            if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id == name and isinstance(node.value, ast.Call)):
                lines = textwrap.dedent(cell).splitlines(keepends=True)
                return _definition(name, node, lines, "<cell>")
    return None


_RUN = re.compile(r"""run_line_magic\(\s*['"]run['"]\s*,\s*['"](.+?)['"]\s*\)""")


def _run_files(cell: str) -> list[str]:
    """Files a history cell ran with `%run` (history holds the transformed call)."""
    import os
    import shlex

    found = []
    for argument in _RUN.findall(cell):
        try:
            words = [w for w in shlex.split(argument) if not w.startswith("-")]
        except ValueError:
            continue
        if words and os.path.isfile(words[0]):
            found.append(os.path.abspath(words[0]))
    return found


def _may_search_history(obj) -> bool:
    """Only a class with no code of its own may be looked up by name in past cells.

    A class whose methods came from somewhere we cannot read (`exec`, `%%time`) must not be
    matched to another class that merely has the same name. Methods that dataclasses generate
    (`<string>`) are not the user's code.
    """
    generated = hasattr(obj, "__dataclass_fields__") or hasattr(obj, "_fields")  # dataclass, NamedTuple
    return all(generated and not _in_a_cell(code) for code in code_objects(obj))


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
    kinds = (ast.ClassDef,) if want_class else (ast.FunctionDef, ast.AsyncFunctionDef)
    if want_class and line is None:  # by name only: `Point = namedtuple(...)` binds a class too
        kinds = (ast.ClassDef, ast.Assign)
    matches = [n for n in _definitions_by_name(text).get(name, ()) if isinstance(n, kinds)]
    if line is not None:
        for node in matches:
            if _first_line(node) <= line <= node.end_lineno:
                return node
        return None
    return matches[-1] if matches else None


_JOINED: dict[int, tuple[list[str], str]] = {}


def _joined(lines: list[str]) -> str:
    """"".join(lines), once per lines list: linecache hands out the same list for a cell, and
    a capture asks for it once per definition in the cell (1,000 helpers in one cell)."""
    cached = _JOINED.get(id(lines))
    if cached is None or cached[0] is not lines:  # holding the list keeps its id unique
        if len(_JOINED) > 256:
            _JOINED.clear()
        cached = _JOINED[id(lines)] = (lines, "".join(lines))
    return cached[1]


@functools.lru_cache(maxsize=256)
def _definitions_by_name(text: str) -> dict[str, list]:
    """Top-level def/class nodes of a cell by name, in order (built once per cell text)."""
    tree = parse_cell(text)
    index: dict[str, list] = {}
    for node in _top_level(tree) if tree is not None else ():
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            index.setdefault(node.name, []).append(node)
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
              and isinstance(node.value, ast.Call)):  # `Point = namedtuple(...)`: the latest binding wins
            index.setdefault(node.targets[0].id, []).append(node)
    return index


def top_level_classes(text: str) -> list[str]:
    """Names of the classes a cell defines at module level (inside if/try/with too), in order."""
    tree = parse_cell(text)
    names = [n.name for n in _top_level(tree) if isinstance(n, ast.ClassDef)] if tree else []
    return list(dict.fromkeys(names))


def _top_level(tree: ast.Module):
    """Module-level statements, looking inside `if`/`try`/`with` blocks as notebooks sometimes
    do, but never into a def or class body (a method is not a module-level definition)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            todo.extend(n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt))


def _first_line(node) -> int:
    return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])


def _definition(name: str, node, lines: list[str], filename: str) -> Definition:
    first = _first_line(node)
    # dedenting the slice equals slicing the dedented cell: dedent keeps every line break
    source = textwrap.dedent("".join(lines[first - 1: node.end_lineno]))
    parsed = ast.parse(source).body[0]
    return Definition(name=name, source=source, node=parsed, filename=filename, first_line=first)


def assignment_cells(history: list[str]) -> dict[str, int]:
    """Name -> index (= execution count) of the latest history cell that binds it at top level."""
    latest: dict[str, int] = {}
    for number, cell in enumerate(history):
        tree = parse_cell(cell) if number else None
        for node in tree.body if tree is not None else ():
            for name in _bound_names(node):
                latest[name] = number
    return latest


@functools.lru_cache(maxsize=1024)
def parse_cell(text: str) -> ast.Module | None:
    """The parsed (dedented) text of a cell or file; cached, since one capture asks for the
    same cell once per definition in it. Callers must not change the tree."""
    try:
        return ast.parse(textwrap.dedent(text))
    except SyntaxError:
        return None


def _bound_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [a.asname or a.name.split(".")[0] for a in node.names]
    targets = {ast.Assign: lambda n: n.targets, ast.AnnAssign: lambda n: [n.target],
               ast.AugAssign: lambda n: [n.target], ast.For: lambda n: [n.target],
               ast.With: lambda n: [i.optional_vars for i in n.items if i.optional_vars]}
    getter = targets.get(type(node))
    if getter is None:
        return []
    return [t.id for target in getter(node) for t in ast.walk(target) if isinstance(t, ast.Name)]
