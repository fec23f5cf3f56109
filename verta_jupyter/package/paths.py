"""Relative paths that come from data (store rows, manifests, listings): checked before use.

A path read from a database, a manifest or a server is untrusted: `../../x`, `/etc/x`, `C:\\x`
or `\\\\server\\x` would make a write land outside its destination. `check_relpath` accepts only
a normalised POSIX relative path that means the same on every platform, and `safe_target`
turns it into a path under a destination folder with no symbolic link on the way.
"""
from __future__ import annotations

import re
from pathlib import Path

# "C:" (a drive, possibly without a separator: "C:x" is relative to C's current folder)
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafePath(ValueError):
    """A path from data that would leave its destination; `why` says how."""

    def __init__(self, path: object, why: str):
        super().__init__(f"{path!r} {why}")
        self.path = path
        self.why = why


def check_relpath(rel: object) -> str:
    """`rel` if it is a safe relative POSIX path ("a/b.txt"), else raise UnsafePath."""
    if not isinstance(rel, str) or not rel:
        raise UnsafePath(rel, "is not a non-empty relative path")
    if "\0" in rel:
        raise UnsafePath(rel, "contains a NUL character")
    if "\\" in rel:  # a separator on Windows: "..\\x" would escape there
        raise UnsafePath(rel, "contains a backslash (a Windows separator)")
    if rel.startswith("/") or _DRIVE.match(rel):
        raise UnsafePath(rel, "is absolute or names a drive")
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafePath(rel, "is not normalised (empty, '.' or '..' component)")
    return rel


def safe_target(dest: Path, rel: str) -> Path:
    """The path `dest/rel` after checking `rel`, creating its parent folders one by one and
    refusing any symbolic link (or non-folder) on the way, so a write there stays under
    `dest`. The target itself must not exist yet."""
    parts = check_relpath(rel).split("/")
    here = Path(dest)
    if here.is_symlink() or not here.is_dir():
        raise UnsafePath(str(dest), "is not a real folder")
    for part in parts[:-1]:
        here = here / part
        if here.is_symlink():
            raise UnsafePath(rel, f"passes through a symbolic link ({here})")
        if not here.exists():
            here.mkdir()
        elif not here.is_dir():
            raise UnsafePath(rel, f"passes through a file ({here})")
    target = here / parts[-1]
    if target.is_symlink() or target.exists():
        raise UnsafePath(rel, "names a file that already exists (a duplicate entry)")
    return target
