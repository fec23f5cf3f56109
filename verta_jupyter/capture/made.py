"""Source for functions that have no `def` at the top of a cell: lambdas and closure-made ones.

Pickling such a function stores bytecode, which crashes (even segfaults) under another Python
minor version. Their source is in the cell all the same: a lambda is an expression on a known
line, and a function made by a factory (`make_scaler(3)`, a decorator's wrapper) is a nested
`def` or `lambda` whose free variables are the closure cells. So model.py gets

    def _vj_make_scale(k):          # one parameter per closure cell
        def scale(x):
            return x * k
        return scale

    scaler = _vj_make_scale(*_vj_value("_vj_cells_scaler"))   # the cells' captured values

Defaults and annotations are stripped from the nested definition (they may name the factory's
locals) and the live defaults are set afterwards.
"""
from __future__ import annotations

import ast
import copy
import linecache
import textwrap
import types


def find_node(fn: types.FunctionType):
    """(cell text, the ast node of the `lambda` or nested `def` that made `fn`) or None."""
    code = fn.__code__
    lines = linecache.getlines(code.co_filename)
    if not lines:
        return None
    text = textwrap.dedent("".join(lines))
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    wanted = code.co_name
    candidates = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Lambda) and wanted == "<lambda>" and node.lineno == code.co_firstlineno:
            candidates.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == wanted:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if first == code.co_firstlineno:
                candidates.append(node)
    matching = [node for node in candidates if _compiles_to(node, code)]
    if len(matching) > 1:  # several lambdas on one line: the columns tell them apart
        matching = [node for node in matching if _spans(node, code)] or matching[:0]
    return (text, matching[0]) if len(matching) == 1 else None


def _spans(node, code: types.CodeType) -> bool:
    """Do the code's instructions (3.11+ positions) lie inside this node's columns?"""
    positions = getattr(code, "co_positions", None)
    if positions is None:
        return False  # Python 3.10: ambiguous, so no source (pickled, tied to the version)
    inside = []
    for line, _, col, end_col in positions():
        if line != node.lineno or col is None or (col == 0 and end_col == 0):
            continue  # other lines, or the function's own prologue (RESUME) at column 0
        right = node.end_col_offset if node.end_lineno == node.lineno else None
        inside.append(node.col_offset <= col and (right is None or (end_col or 0) <= right))
    return bool(inside) and all(inside)


def _compiles_to(node, code: types.CodeType) -> bool:
    """Does this node's source make `code`? (Several lambdas may share a line.)"""
    if len(_argument_names(node)) != code.co_argcount + code.co_kwonlyargcount + \
            bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08):
        return False
    return tuple(_argument_names(node)) == code.co_varnames[:len(_argument_names(node))] and \
        _names_in(node) >= set(code.co_names) - {"__class__"}


def _argument_names(node) -> list[str]:
    """In co_varnames order: positional, keyword-only, *args, **kwargs."""
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [args.vararg.arg] if args.vararg else []
    names += [args.kwarg.arg] if args.kwarg else []
    return names


def _names_in(node) -> set[str]:
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
        elif isinstance(sub, ast.alias):
            found.update(sub.name.split("."))
            if sub.asname:
                found.add(sub.asname)
    return found


def lambda_source(text: str, node: ast.Lambda) -> str:
    """The lambda expression exactly as the user wrote it (unparsed if the segment is odd)."""
    return ast.get_source_segment(text, node) or ast.unparse(node)


def factory_source(factory_name: str, fn: types.FunctionType, node) -> str:
    """A top-level factory that rebuilds `fn` from its closure cells, as source."""
    params = ", ".join(fn.__code__.co_freevars)
    inner = _stripped(node)
    if isinstance(inner, ast.Lambda):
        body = f"    return {ast.unparse(inner)}\n"
    else:
        body = textwrap.indent(ast.unparse(inner), "    ") + f"\n    return {inner.name}\n"
    return f"def {factory_name}({params}):\n{body}"


def _stripped(node):
    """A copy without defaults and annotations: they may name the factory's own locals."""
    node = copy.deepcopy(node)
    args = node.args
    args.defaults = [ast.Constant(None) for _ in args.defaults]
    args.kw_defaults = [None if d is None else ast.Constant(None) for d in args.kw_defaults]
    if not isinstance(node, ast.Lambda):
        node.returns = None
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                arg.annotation = None
    return node
