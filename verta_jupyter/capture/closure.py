"""Resolve everything a class needs, transitively, and classify each piece.

Starting from the class statement, every free name is looked up where the class was defined
(the notebook's namespace) and becomes one of: builtin (nothing to do), module import,
library object import, notebook definition (its source, analysed in turn), literal (source),
or value (pickled). Problems are collected, not raised one by one, so the user sees them all.

The walk is this module's `Closure`; what a value is lives in `kinds`, the import lines and
the modules behind them in `imports`, the records it produces in `items`.
"""
from __future__ import annotations

import ast
import builtins
import inspect
import types

from ..catalog import problem
from ..errors import CaptureError, Problem
from . import cells, kinds, made, names, state, values
from .imports import Imports, origin
from .items import EMPTY, Dependency, Item
from .kinds import IPYTHON_ONLY, MODULE_DUNDERS

__all__ = ["Closure", "Dependency", "Item"]


class Closure:
    """Walks the closure of one class. Use `Closure.of(cls, namespace, ...)`."""

    def __init__(self, namespace: dict, root_module: str, cell_source: str | None):
        self.namespace = namespace
        self.root_module = root_module
        self.cell_source = cell_source
        self.history = list(namespace.get("_ih") or namespace.get("In") or [])
        self.items: dict[str, Item] = {}
        self.dependencies: dict[str, Dependency] = {}
        self.definitions: list[cells.Definition] = []
        self.values: dict[str, object] = {}
        self.problems: list[Problem] = []
        self.modules = Imports(root_module, self.problems)
        self.imports = self.modules.lines  # import line -> the name it binds
        self.modules_used = self.modules.modules_used  # pinned in requirements.txt
        self.local = self.modules.local  # bundled
        self.warnings: list[Problem] = []
        self.future_annotations = False  # a cell ran `from __future__ import annotations`
        self._assignments: dict[str, int] | None = None
        self._made: dict[int, str | None] = {}
        self._pickled_ids: dict[int, str] = {}  # id(value) -> the name it is stored under
        self._wrapped: dict[int, str] = {}  # id(original function) -> the name its wrapper has
        self.synthetic: dict[str, object] = {}  # model.py names that the notebook does not bind
        self.patches: list[str] = []  # items that restore state changed after a definition  # id(function) -> model.py name (lambdas, closures)

    @classmethod
    def of(cls, target: type, namespace: dict, root_module: str, cell_source: str | None) -> "Closure":
        closure = cls(namespace, root_module, cell_source)
        closure.add_definition(target.__name__, target, used_by=None, cell_source=cell_source)
        if closure.problems:
            raise CaptureError(problems=closure.problems)
        return closure

    # -- definitions (notebook classes and functions, captured as source)
    def add_definition(self, name: str, obj, used_by: str | None, cell_source: str | None = None):
        if obj.__name__ in self.items:
            return
        try:
            definition = cells.locate(obj, cell_source=cell_source, history=self.history)
        except CaptureError as exc:
            self.problems.extend(exc.problems)
            return
        # Reserve the slot first: mutually recursive helpers find it and stop.
        item = self.items[obj.__name__] = Item(obj.__name__, "definition", definition.source,
                                               comment=f"from {definition.origin}")
        self.definitions.append(definition)
        self.future_annotations |= kinds.compiled_with_future_annotations(obj)
        self._note(obj.__name__, "notebook", f"{type(obj).__name__} {obj.__name__}", definition.origin, used_by)
        analysis = names.analyse(definition.source, definition.node, own_name=definition.name)
        self._warn_dynamic(definition, analysis)
        self._resolve_uses(item, analysis, definition.where, definition.name)
        for module_name in sorted(analysis.imports):  # `import x` inside a method: still a requirement
            self.modules.require_named(module_name, import_if_needed=True)
        for free, use in analysis.mutated.items():
            line, scope = use.first
            self.warnings.append(problem(
                "VJ207", f"'{scope}' assigns the notebook global '{free}' with a `global` statement",
                name=free, where=definition.where(line)))
        if name != obj.__name__:
            self.items[name] = Item(name, "alias", f"{name} = {obj.__name__}", depends_on=[obj.__name__])
        self._add_live_state(obj, definition)

    # -- state changed after a definition: patches after it in model.py
    def _add_live_state(self, obj, definition: cells.Definition) -> None:
        target = obj.__name__
        if isinstance(obj, type) and isinstance(definition.node, ast.ClassDef):
            patches = state.class_patches(obj, definition.node)
        elif isinstance(obj, types.FunctionType) and isinstance(definition.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            plain = inspect.unwrap(obj) is obj and not definition.node.decorator_list
            patches = state.function_patches(obj, definition.node if plain else None, self.namespace)
        else:
            patches = []
        for patch in patches:
            self._try_patch(target, f"{target}.{patch.attribute} = {{}}", patch.value,
                            f"{target}.{patch.attribute}", definition, required=patch.required,
                            late=patch.late)
        for kind, impl in state.dispatch_overloads(obj):
            self._add_overload(target, kind, impl, definition)

    def _try_patch(self, target: str, template: str, value, label: str, definition, required: bool,
                   late: bool = False) -> None:
        try:
            self._emit_patch(target, template, value, late)
        except _StaleDefinition as exc:
            self.problems.append(problem("VJ205", f"'{label}' refers to {exc}", name=label,
                                         where=definition.where()))
        except Exception as exc:  # pickling raises many types; each is the same user problem
            if required:
                self.problems.append(self._unpicklable(label, value, exc, definition.where(), target))

    def _add_overload(self, target: str, kind: type, impl, definition: cells.Definition) -> None:
        """An overload of a singledispatch function: its `@target.register` statement re-runs it."""
        try:
            found = cells.locate(impl, history=self.history)
        except CaptureError:
            found = None
        decorated = found is not None and any(
            isinstance(n, ast.Name) and n.id == target for d in found.node.decorator_list for n in ast.walk(d))
        if not decorated:  # `target.register(int, impl)` in a statement of its own
            self._try_patch(target, f"{target}.register(*{{}})", (kind, impl),
                            f"{target}.registry[{kind.__qualname__}]", definition, required=True)
            return
        key = f"_vj_overload_{len(self.items)}"
        item = self.items[key] = Item(key, "patch", found.source.rstrip(), comment=f"from {found.origin}",
                                      depends_on=[target])
        self.patches.append(key)
        self._resolve_uses(item, names.analyse(found.source, found.node, own_name=impl.__name__),
                           found.where, f"{target} overload")

    def _resolve_uses(self, item: Item, analysis: names.NameAnalysis, where, owner: str) -> None:
        for free, use in analysis.uses.items():
            if free in analysis.soft and free not in self.namespace:
                continue  # a string annotation may name what is not defined: no error for it
            line, scope = use.first
            place = f"{where(line)}, in {scope or owner}"
            if self.resolve(free, use, place, user=scope or owner) and free not in item.depends_on:
                item.depends_on.append(free)

    # -- wrappers: `@logged` without functools.wraps, `np.vectorize(f)`, `joblib` caches, ...
    def _wrapped_original(self, value, name: str):
        """The notebook function `name` that the object bound to `name` wraps, if it is one."""
        if isinstance(value, type) or (isinstance(value, types.FunctionType) and value.__qualname__ == name):
            return None
        seen, frontier = set(), [value]
        for _ in range(4):  # wrappers of wrappers, a few levels deep
            found = []
            for obj in frontier:
                if id(obj) in seen:
                    continue
                seen.add(id(obj))
                for inner in kinds.wrapped_candidates(obj):
                    if (isinstance(inner, types.FunctionType) and inner.__qualname__ == name
                            and inner.__module__ in (self.root_module, "__main__")):
                        return inner
                    found.append(inner)
            frontier = found
        return None

    def _add_wrapped(self, name: str, wrapper, original, user: str) -> bool:
        try:
            definition = cells.locate(original, history=self.history)
        except CaptureError as exc:
            self.problems.extend(exc.problems)
            return False
        if definition.node.decorator_list:  # `@logged def name`: the statement re-makes the wrapper
            self._wrapped[id(original)] = name
            self.add_definition(name, original, used_by=user)
            return True
        # `name = np.vectorize(name)`: the def, then the wrapper pickled around it by name
        key = f"_vj_def_{name}"
        self._wrapped[id(original)] = name
        item = self.items[key] = Item(key, "definition", definition.source, comment=f"from {definition.origin}")
        self._resolve_uses(item, names.analyse(definition.source, definition.node), definition.where, name)
        value = self.items[name] = Item(name, "value", "", depends_on=[key])
        try:
            self._emit_call(value, "{}", wrapper)
        except Exception as exc:  # pickling raises many types; each is the same user problem
            del self.items[name]
            self.problems.append(self._unpicklable(name, wrapper, exc, definition.where(), user))
            return False
        self._note(name, "notebook", f"{type(wrapper).__name__} around function {name}", definition.origin, user)
        return True

    # -- lambdas and closure-made functions: source too, never bytecode
    def made_name(self, fn, preferred: str | None = None) -> str | None:
        """The model.py name of a lambda or closure-made notebook function emitted as source;
        None when its source cannot be found (it is then pickled, tied to this Python)."""
        if id(fn) in self._made:
            return self._made[id(fn)]
        found = made.find_node(fn)
        if found is None:
            self._made[id(fn)] = None
            return None
        text, node = found
        key = preferred if preferred and self.namespace.get(preferred) is fn else self._synthetic_name(fn)
        self._made[id(fn)] = key  # before recursing: a function may reach itself
        self.synthetic[key] = fn
        cell = cells.describe_file(fn.__code__.co_filename)
        where = lambda line: f"{cell} line {fn.__code__.co_firstlineno + line - 1}"  # noqa: E731
        if fn.__closure__ is None and "<locals>" not in fn.__qualname__ and isinstance(node, ast.Lambda):
            code = f"{key} = {made.lambda_source(text, node)}"
            item = self.items[key] = Item(key, "definition", code, comment=f"lambda from {cell} line {node.lineno}")
            self._resolve_uses(item, names.analyse(code, ast.parse(code).body[0], own_name=key), where, key)
        else:
            try:
                self._add_closure_made(key, fn, node, where, cell)
            except Exception:  # a closure value that cannot be saved: the caller reports the value
                for name in (key, "_vj_make_" + (key[4:] if key.startswith("_vj_") else key)):
                    self.items.pop(name, None)
                self.synthetic.pop(key, None)
                self._made[id(fn)] = None
                return None
        self._note(key, "notebook", f"function {fn.__qualname__}", f"{cell} line {node.lineno}", None)
        return key

    def _add_closure_made(self, key: str, fn, node, where, cell: str) -> None:
        factory = "_vj_make_" + (key[4:] if key.startswith("_vj_") else key)
        source = made.factory_source(factory, fn, node)
        maker = self.items[factory] = Item(factory, "definition", source,
                                           comment=f"rebuilds {fn.__qualname__} (from {cell} line {node.lineno})")
        self._resolve_uses(maker, names.analyse(source, ast.parse(source).body[0]), where, fn.__qualname__)
        contents = tuple(c.cell_contents for c in fn.__closure__ or ())
        item = self.items[key] = Item(key, "value", "", depends_on=[factory])
        self._emit_call(item, f"{factory}(*{{}})", contents)
        if fn.__defaults__ or fn.__kwdefaults__:  # stripped from the nested def: set live ones
            patch = f"{key}.__defaults__, {key}.__kwdefaults__ = {{}}"
            self._emit_patch(key, patch, (fn.__defaults__, fn.__kwdefaults__))

    def _emit_call(self, item: Item, template: str, value) -> None:
        """`item.code` = template filled with `value` as a literal, or loaded from globals.pkl."""
        literal = values.literal_source(value)
        name = self.definition_name(value) if kinds.may_be_definition(value) else None
        if name is None and literal is None:
            name = self._global_holding(value, item.name)  # a notebook global's object: stored once
        if literal is not None or name is not None:
            item.code = f"{item.name} = " + template.format(literal if literal is not None else name)
            if name is not None:
                self._add_reference(name, value, item.name)
                item.depends_on.append(name)
            return
        data, references, tied = values.dump_value(value, self.definition_name)
        for module_name in values.modules_needed(data, self._live_reference):
            self.modules.require_named(module_name)
        item.code = f"{item.name} = " + template.format(f'_vj_value("{item.name}")')
        item.pickled, item.tied = data, tied
        for ref_name, obj in references.items():
            self._add_reference(ref_name, obj, item.name)
            item.depends_on.append(ref_name)

    def _global_holding(self, value, user: str) -> str | None:
        """The notebook global bound to this very object (captured by value), if there is one."""
        if self._pickled_ids.get(id(value), user) != user and self._pickled_ids[id(value)] in self.items:
            return self._pickled_ids[id(value)]
        if isinstance(value, (types.ModuleType, type, types.FunctionType)):
            return None
        for key, bound in list(self.namespace.items()):
            if bound is value and key != user and key.isidentifier() and not key.startswith("_") \
                    and key not in IPYTHON_ONLY:
                use = names.NameUse(key, [1], [user])
                if self.resolve(key, use, "the notebook", user) and self.items.get(key) is not None:
                    return key
                return None
        return None

    def _emit_patch(self, target: str, template: str, value, late: bool = False) -> None:
        """A statement after `target` (after every definition, if `late`) that restores live
        state (`{}` = the value)."""
        key = f"_vj_patch_{len(self.items)}"
        item = self.items[key] = Item(key, "patch", "", depends_on=[target], late=late)
        self._emit_call(item, template, value)
        item.code = item.code.split(" = ", 1)[1]  # a statement, not a binding
        self.patches.append(key)

    def _add_reference(self, ref_name: str, obj, user: str) -> None:
        if ref_name not in self.items:
            self.add_definition(ref_name, obj, used_by=user)

    def _synthetic_name(self, fn) -> str:
        base = "lambda" if fn.__name__ == "<lambda>" else fn.__name__
        return f"_vj_{base}_{len(self._made)}"

    def _warn_dynamic(self, definition: cells.Definition, analysis: names.NameAnalysis):
        for call, line, scope in analysis.dynamic:
            self.warnings.append(problem(
                "VJ206", f"'{scope}' calls {call}(): names it looks up at run time are not captured",
                name=scope, where=definition.where(line)))

    # -- one free name
    def resolve(self, name: str, use: names.NameUse, where: str, user: str) -> bool:
        """Classify `name`; return True if model.py gets an item for it."""
        if name in self.items:
            self._used_by(name, user)
            return True
        if name in self.imports.values():
            self._used_by(name, user)
            return False
        if name in MODULE_DUNDERS:
            return False  # the generated module has its own __name__, __file__, ...
        if name not in self.namespace:
            return self._builtin_or_unresolved(name, where, user)
        value = self.namespace[name]
        if kinds.stands_in_for_builtin(name, value):
            return False  # IPython's own `open` wraps the builtin: deployed, it is the builtin
        if kinds.is_ipython_object(value):
            self.problems.append(problem(
                "VJ204", f"'{name}' comes from IPython, which is not there when the model is deployed", name=name, where=where))
            return False
        if isinstance(value, types.ModuleType):
            self._add_module(name, value, use, user)
            return False
        original = self._wrapped_original(value, name)
        if original is not None:
            return self._add_wrapped(name, value, original, user)
        if kinds.is_made_function(value, self.root_module):
            key = self.made_name(value, preferred=name)
            if key is not None:
                if key != name:
                    self.items[name] = Item(name, "alias", f"{name} = {key}", depends_on=[key])
                self._used_by(key, user)
                return True
        try:
            is_definition = self.definition_name(value) is not None
        except _StaleDefinition as exc:
            self.problems.append(problem("VJ205", f"'{name}' is {exc}", name=name, where=where))
            return False
        if is_definition:
            self.add_definition(name, value, used_by=user)
            return True
        if self._add_library_object(name, value, user):
            return False
        return self._add_value(name, value, where, user)

    def _builtin_or_unresolved(self, name: str, where: str, user: str) -> bool:
        if name in IPYTHON_ONLY:
            self.problems.append(problem(
                "VJ204", f"'{name}' only exists inside IPython", name=name, where=where))
        elif not hasattr(builtins, name) or name in IPYTHON_ONLY:
            self.problems.append(problem(
                "VJ201", f"name '{name}' is not defined in the notebook", name=name, where=where))
        return False

    # -- modules and library objects (imports + pinned requirements: imports.py)
    def _add_module(self, name: str, module: types.ModuleType, use: names.NameUse, user: str):
        line = self.modules.add_module(name, module, use.attribute_chains)
        self._note(name, "module", line, origin(module.__name__), user)

    def _add_library_object(self, name: str, value, user: str) -> bool:
        found = self.modules.add_library_object(name, value)
        if found is None:
            return False
        line, public = found
        self._note(name, "library", line, origin(public), user)
        return True

    # -- values (literals as source, the rest pickled)
    def _add_value(self, name: str, value, where: str, user: str) -> bool:
        literal = values.literal_source(value)
        self.values[name] = value
        if literal is not None:
            self.items[name] = Item(name, "literal", f"{name} = {literal}")
            self._note(name, "literal", values.describe(value), self._assigned_in(name), user)
            return True
        same = self._pickled_ids.get(id(value))
        if same is not None and same in self.items:  # `W2 = W`: one object, stored once, still one
            self.items[name] = Item(name, "alias", f"{name} = {same}", depends_on=[same])
            self._note(name, "value", f"the same object as {same}", self._assigned_in(name), user)
            return True
        self._pickled_ids[id(value)] = name
        try:
            data, references, tied = values.dump_value(value, self.definition_name)
            for module_name in values.modules_needed(data, self._live_reference):
                self.modules.require_named(module_name)
        except Exception as exc:  # pickling raises many types; each is the same user problem
            self.problems.append(self._unpicklable(name, value, exc, where, user))
            return False
        item = self.items[name] = Item(name, "value", f'{name} = _vj_value("{name}")',
                                       comment=f"{values.describe(value)}, frozen at capture", pickled=data,
                                       tied=tied, empty=EMPTY.get(type(value)))
        for ref_name, obj in references.items():
            self._add_reference(ref_name, obj, name)
            item.depends_on.append(ref_name)
        self._note(name, "value", values.describe(value), self._assigned_in(name), user)
        self.warnings.append(problem(
            "VJ208", f"'{name}' ({values.describe(value)}) is captured by value", name=name, where=where))
        return True

    def _assigned_in(self, name: str) -> str:
        """'cell In[4]' for the latest cell that assigns `name`, when the history shows it."""
        if self._assignments is None:  # one pass over the history per capture, not per value
            self._assignments = cells.assignment_cells(self.history)
        number = self._assignments.get(name)
        return f"cell In[{number}]" if number is not None else "the notebook"

    def _live_reference(self, pid: str):
        return self.synthetic[pid] if pid in self.synthetic else self.namespace[pid]

    def _unpicklable(self, name, value, exc, where, user) -> Problem:
        if isinstance(exc, _StaleDefinition):
            return problem("VJ205", f"'{name}' refers to {exc}", name=name, where=where)
        return problem("VJ202", f"'{name}' ({values.describe(value)}) cannot be saved with "
                       f"the model: {type(exc).__name__}: {exc}", name=name, where=where)

    def definition_name(self, obj) -> str | None:
        """The model.py name of a notebook function/class; None if `obj` is not one."""
        if not (isinstance(obj, (type, types.FunctionType)) or kinds.is_cache_wrapper(obj)):
            return None
        if getattr(obj, "__module__", None) not in (self.root_module, "__main__"):
            return None
        if kinds.is_made_function(obj, self.root_module):
            return self.made_name(obj)  # None: no source, pickled by value (tied to this Python)
        if "<" in obj.__qualname__ or "." in obj.__qualname__:
            return None  # nested classes are pickled by value (cloudpickle)
        if id(obj) in self._wrapped:
            return self._wrapped[id(obj)]  # the original under a wrapper bound to its name
        if self.namespace.get(obj.__name__) is not obj:
            # An earlier `def` of the name, still held by a value (functions defined in a loop,
            # a dict made before the helper was edited): its own source is exactly what the
            # notebook runs, since a function finds its globals when called.
            earlier = self.made_name(obj) if isinstance(obj, types.FunctionType) else None
            if earlier is not None:
                return earlier
            raise _StaleDefinition(f"an earlier definition of '{obj.__name__}' (it was redefined "
                                   "or deleted after this value was made)")
        return obj.__name__

    # -- bookkeeping for the summary
    def _note(self, name, kind, detail, defined_in, used_by):
        dep = self.dependencies.setdefault(name, Dependency(name, kind, detail, defined_in))
        if used_by and used_by not in dep.used_by:
            dep.used_by.append(used_by)

    def _used_by(self, name, user):
        if name in self.dependencies and user not in self.dependencies[name].used_by:
            self.dependencies[name].used_by.append(user)


class _StaleDefinition(Exception):
    pass
