"""What a capture produces, piece by piece: `Item`s for model.py and `Dependency` rows for the
summary. Plain records: the closure walk (closure.py) fills them, emit.py orders and prints them.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Dependency:
    """One thing the model needs, for people: what, what kind, where defined, who uses it."""

    name: str
    kind: str  # module | library | notebook | literal | value | local-module
    detail: str  # the import line, the value's type, ...
    defined_in: str  # "cell line 3", "numpy==2.4.6", "helpers.py"
    used_by: list[str] = field(default_factory=list)


@dataclass
class Item:
    """A piece of model.py: an import, a definition, a literal or a pickled value."""

    name: str
    kind: str  # import | definition | alias | literal | value
    code: str  # the source line(s) for model.py
    comment: str = ""
    pickled: bytes | None = None
    depends_on: list[str] = field(default_factory=list)  # names of other items
    tied: bool = False  # pickled bytecode: loads only under this Python minor version
    empty: str | None = None  # a value container's empty literal: `{}` (to break cycles)
    late: bool = False  # a patch emitted after every definition (see state.Patch.late)


EMPTY = {dict: "{}", list: "[]", set: "set()"}  # registries decorators fill
