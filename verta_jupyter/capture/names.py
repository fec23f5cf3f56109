"""Which global names a `def`/`class` statement needs, and where each is used.

Walking bytecode (as cloudpickle does) sees method bodies only; re-running a whole `class`
statement also evaluates decorators, bases, keywords, defaults, annotations and class-body
expressions. `symtable` sees every scope of the statement; `ast` tells the line and the
enclosing function for messages.
"""
from __future__ import annotations

import ast
import symtable
from dataclasses import dataclass, field

# Calls that look names up at run time, hiding what the model really needs.
DYNAMIC_CALLS = {"eval", "exec", "globals", "locals", "vars", "__import__", "import_module"}


@dataclass
class NameUse:
    """Every use of one global name inside a definition."""

    name: str
    lines: list[int] = field(default_factory=list)  # relative to the definition's first line
    scopes: list[str] = field(default_factory=list)  # "MyModel.predict", parallel to lines
    attribute_chains: set[str] = field(default_factory=set)  # "np.linalg.norm" style

    @property
    def first(self) -> tuple[int, str]:
        return (self.lines[0], self.scopes[0]) if self.lines else (1, "")


@dataclass
class NameAnalysis:
    uses: dict[str, NameUse]
    mutated: dict[str, NameUse]  # names assigned through a `global` statement
    dynamic: list[tuple[str, int, str]]  # (call, line, scope)
    imports: set[str]  # modules imported inside the definition (`import json` in predict)
    soft: set[str] = field(default_factory=set)  # named only inside string annotations


def analyse(source: str, node: ast.stmt, own_name: str | None = None) -> NameAnalysis:
    """Global names the statement `node` (parsed from `source`) reads, mutates, or hides."""
    own_name = own_name or getattr(node, "name", "")
    needed, mutated = _global_symbols(source, own_name)
    soft = _string_annotation_names(node) - needed - {own_name}
    needed |= soft
    visitor = _UseVisitor(needed | mutated)
    visitor.visit(node)
    uses = {n: visitor.uses[n] for n in needed if n in visitor.uses}
    for name in needed - set(uses):  # symtable saw it, ast did not place it: still needed
        uses[name] = NameUse(name, [1], [own_name])
    mutated_uses = {n: visitor.uses.get(n) or NameUse(n, [1], [own_name]) for n in mutated}
    return NameAnalysis(uses=uses, mutated=mutated_uses, dynamic=visitor.dynamic, imports=visitor.imports,
                        soft=soft)


def _string_annotation_names(node: ast.AST) -> set[str]:
    """Names inside string annotations (`data: "pd.DataFrame"`, `-> "Batch"`): input conversion
    evaluates them, so what they name must be in model.py too."""
    annotations = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.arg) and sub.annotation is not None:
            annotations.append(sub.annotation)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and sub.returns is not None:
            annotations.append(sub.returns)
        elif isinstance(sub, ast.AnnAssign):
            annotations.append(sub.annotation)
    found: set[str] = set()
    for annotation in annotations:
        for text in (c.value for c in ast.walk(annotation) if isinstance(c, ast.Constant) and isinstance(c.value, str)):
            try:
                parsed = ast.parse(text.strip(), mode="eval")
            except SyntaxError:
                continue
            found.update(n.id for n in ast.walk(parsed) if isinstance(n, ast.Name))
    return found


def _global_symbols(source: str, own_name: str) -> tuple[set[str], set[str]]:
    table = symtable.symtable(source, "<verta_jupyter>", "exec")
    needed: set[str] = set()
    mutated: set[str] = set()
    stack = [table]
    while stack:
        scope = stack.pop()
        stack.extend(scope.get_children())
        for sym in scope.get_symbols():
            if not sym.is_global():
                continue
            if sym.is_referenced():
                needed.add(sym.get_name())
            if scope is not table and sym.is_declared_global() and sym.is_assigned():
                mutated.add(sym.get_name())
                needed.add(sym.get_name())  # `COUNT += 1` reads it too; it must exist in model.py
    needed.discard(own_name)  # a method referring to its own class or a recursive function
    return needed, mutated


class _UseVisitor(ast.NodeVisitor):
    def __init__(self, names: set[str]):
        self.names = names
        self.uses: dict[str, NameUse] = {}
        self.dynamic: list[tuple[str, int, str]] = []
        self.imports: set[str] = set()
        self._scope: list[str] = []

    def _scoped(self, node):
        self._scope.append(node.name)
        self.generic_visit(node)
        self._scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def _record(self, name: str, line: int, chain: str | None = None):
        use = self.uses.setdefault(name, NameUse(name))
        use.lines.append(line)
        use.scopes.append(".".join(self._scope))
        if chain:
            use.attribute_chains.add(chain)

    def visit_Name(self, node: ast.Name):
        if node.id in self.names:
            self._record(node.id, node.lineno)

    def visit_Attribute(self, node: ast.Attribute):
        chain = _dotted(node)
        if chain and chain.split(".", 1)[0] in self.names:
            self._record(chain.split(".", 1)[0], node.lineno, chain)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import):
        self.imports.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom):
        if node.level == 0 and node.module:
            self.imports.add(node.module)

    def visit_Call(self, node: ast.Call):
        func = node.func
        called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if called in DYNAMIC_CALLS:
            self.dynamic.append((called, node.lineno, ".".join(self._scope)))
        self.generic_visit(node)


def _dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))
