"""Write model.py: a standalone, readable module that rebuilds the class.

Order: imports, then every captured definition and value in dependency order (what a piece
uses comes before it where possible; mutual recursion between function bodies needs no order),
then the class. Pickled values are loaded by a few lines of plain `pickle` at their place.
"""
from __future__ import annotations

from ..package.format import value_files
from .closure import Item

HEADER = '''"""{class_name}, captured by verta_jupyter {version} as a standalone model.

Generated from the notebook: review it freely, but do not edit it (verta_model.json pins the
sha256 of every file in this package, and loading refuses a modified one).
"""
'''

LIB_PATH = '''
# Local modules the notebook imported are bundled in lib/ beside this file.
import sys as _vj_sys
from pathlib import Path as _vj_Path

_vj_sys.path.insert(0, str(_vj_Path(__file__).with_name("lib")))
'''

VALUE_LOADER = '''
# Values captured from the notebook (fitted objects, arrays, ...) are pickled in values/: per
# value, its pickle stream (.pkl) and its large buffers back to back (.buf, sizes listed here).
# They refer to this module's own classes and functions by name, never by pickled code.
import pickle as _vj_pickle
from pathlib import Path as _vj_Path

_vj_stored = {stored}


class _VjUnpickler(_vj_pickle.Unpickler):
    def persistent_load(self, name):
        return globals()[name]


def _vj_buffers(path, sizes):
    """Each buffer read from disk straight into its own bytearray: one copy, and writable."""
    buffers = []
    with open(path, "rb", buffering=0) as file:
        for size in sizes:
            buffer = bytearray(size)
            view = memoryview(buffer)
            while view:
                got = file.readinto(view)
                if not got:
                    raise EOFError(f"{{path}} is shorter than the pickle needs")
                view = view[got:]
            buffers.append(buffer)
    return buffers


def _vj_value(name):
    stream, buffers, sizes = _vj_stored[name]
    here = _vj_Path(__file__).parent
    loaded = _vj_buffers(here / buffers, sizes) if sizes else ()
    with open(here / stream, "rb") as file:
        return _VjUnpickler(file, buffers=loaded).load()


def _vj_refill(target, content):
    """A registry that decorators filled as this module ran gets the notebook's exact content."""
    if isinstance(target, list):
        target[:] = content
    else:
        target.clear()
        target.update(content)
'''


def dependency_order(items: dict[str, Item], root: str) -> list[Item]:
    """Items reachable from `root`, each after what it depends on (DFS post-order).

    A registry on a cycle (class -> decorator -> dict -> class: the decorator fills the dict
    the class's module-level value holds) is split: emitted empty first, so the decorators
    can fill it as model.py runs, and set to the notebook's exact content at the end.
    """
    split = _registries_on_cycles(items, root)
    if not split:
        return _post_order(items, root)
    items = dict(items)
    fills = []
    for name in split:
        value = items[name]
        items[name] = Item(name, "literal", f"{name} = {value.empty}",
                           comment="filled by decorators below; its notebook content is set at the end")
        fill = f"_vj_fill_{name}"
        fills.append(Item(fill, "fill", f'_vj_refill({name}, _vj_value("{fill}"))', pickled=value.pickled,
                          tied=value.tied, depends_on=list(value.depends_on)))
    ordered = _post_order(items, root, extra=[dep for fill in fills for dep in fill.depends_on])
    return [i for i in ordered if i.name in split] + [i for i in ordered if i.name not in split] + fills


def _registries_on_cycles(items: dict[str, Item], root: str) -> list[str]:
    found: list[str] = []
    path: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str):
        if name not in items:
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):]
            found.extend(n for n in cycle if items[n].empty is not None and n not in found)
            return
        if state.get(name):
            return
        state[name] = "visiting"
        path.append(name)
        for dep in items[name].depends_on:
            visit(dep)
        path.pop()
        state[name] = "done"

    visit(root)
    for item in items.values():
        if item.kind == "patch":
            visit(item.name)
    return found


def _post_order(items: dict[str, Item], root: str, extra: list[str] = ()) -> list[Item]:
    ordered: list[Item] = []
    state: dict[str, str] = {}

    def visit(name: str):
        if state.get(name) or name not in items:
            return  # done, or on the current path (a cycle: body references need no order)
        state[name] = "visiting"
        for dep in items[name].depends_on:
            visit(dep)
        state[name] = "done"
        ordered.append(items[name])

    visit(root)
    for name in extra:  # what a refilled registry holds, in order too
        visit(name)
    patches = [item for item in items.values() if item.kind == "patch"]
    for patch in patches:
        for dep in patch.depends_on:
            visit(dep)
    leftovers = [item for name, item in items.items() if name not in state and item.kind != "patch"]
    ordered = leftovers + [item for item in ordered if item.kind != "patch"]
    for patch in (p for p in patches if not p.late):  # live state, right after what it needs
        position = max((i for i, item in enumerate(ordered) if item.name in patch.depends_on), default=len(ordered) - 1)
        ordered.insert(position + 1, patch)
    return ordered + [patch for patch in patches if patch.late]  # class data: once all ran


def render(class_name: str, version: str, imports: list[str], items: list[Item], bundled: bool,
           future_annotations: bool = False) -> str:
    parts = [HEADER.format(class_name=class_name, version=version)]
    if future_annotations:  # the notebook's annotations were strings; keep them so
        parts.append("from __future__ import annotations\n")
    if bundled:
        parts.append(LIB_PATH)
    if imports:
        parts.append("\n".join(sorted(imports, key=_import_sort_key)) + "\n")
    if any(item.pickled is not None for item in items):
        parts.append(VALUE_LOADER.format(stored=_stored_table(items)))
    for item in items:
        parts.append(_render_item(item))
    return "\n".join(parts).rstrip() + "\n"


def _stored_table(items: list[Item]) -> str:
    """model.py's table of value files: name -> (stream, buffers, buffer sizes)."""
    pickled = [item for item in items if item.pickled is not None]
    files = value_files([item.name for item in pickled])
    rows = [f"    {item.name!r}: ({files[item.name][0]!r}, {files[item.name][1]!r}, {tuple(item.pickled.sizes)!r}),"
            for item in pickled]
    return "{\n" + "\n".join(rows) + "\n}"


def _render_item(item: Item) -> str:
    if item.kind == "definition" or "\n" in item.code.strip():
        comment = f"# {item.comment}\n" if item.comment else ""
        return f"\n{comment}{item.code.rstrip()}\n"
    comment = f"  # {item.comment}" if item.comment else ""
    return f"{item.code}{comment}"


def _import_sort_key(line: str):
    return (line.startswith("from "), line)
