"""How values appear in messages: one short line, whatever the value."""
from __future__ import annotations


def shorten(text: str, limit: int = 80) -> str:
    """`text` cut to at most `limit` characters, ending in "..." when cut."""
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."
