"""What both directions of jsonify share: a conversion failure that carries its path out.

Kept apart so that `jsonify` (output) and `jsonify_input` (input) can both raise it without
importing each other in a cycle; `jsonify` re-exports the input side.
"""
from __future__ import annotations


class NoJsonForm(Exception):
    """Raised deep inside a conversion; each container on the way out adds its key."""

    def __init__(self, type_name: str, detail: str = ""):
        super().__init__(type_name)
        self.type_name, self.detail, self.segments = type_name, detail, []

    def where(self, root: str) -> str:
        """The failing value's path as the user writes it: `result["scores"][3]`."""
        return root + "".join(reversed(self.segments))


def type_name(t: type) -> str:
    """`t` as messages name it: bare for builtins and notebook classes, else module-qualified."""
    module = t.__module__
    return t.__qualname__ if module in ("builtins", "__main__") else f"{module}.{t.__qualname__}"
