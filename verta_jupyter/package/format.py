"""Model package v1: write, read and verify the directory a captured model becomes.

| file | what |
|---|---|
| verta_model.json | manifest: format, class, entry, versions, artifact keys, requirements, dependencies, warnings, sha256 of every file |
| model.py | standalone readable source (imports, helpers, literals, the class) |
| values/<k>.pkl | one captured value's pickle stream, protocol 5 (data only; definitions referenced by name) |
| values/<k>.buf | that value's large buffers (array data), back to back, read into bytearrays by model.py |
| globals.pkl | pickled captured values, all in one file (packages written before values/) |
| class.pkl | optional cloudpickle fast path, used only on exact Python + cloudpickle match |
| requirements.txt | pinned distributions the model needs |
| lib/ | bundled local modules |
| input_example.json, output_example.json | the sample round trip |

model.py lists each value's files and buffer sizes in its `_vj_stored` table (the k-th pickled
value in model.py's order is `values/<k>.*`) and carries its own loader, so a package of any
layout is loaded by the model.py it holds. Value files are never hashed twice: their digests
were taken as they were written, and a temporary package takes them by hard link.

A package is written to a temporary sibling directory and renamed into place, so a reader never
sees half of one. Reading verifies every digest first and refuses a modified file.
Verification walks exactly what an import can see: every file and folder, hidden ones and
`__pycache__` included; a symbolic link, a special file, or any file the manifest does not list
is refused, and the manifest's own paths must be safe relative paths.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from .._digest import sha256_file
from ..errors import PackageError
from . import valuefiles
from .paths import UnsafePath, check_relpath

FORMAT = "verta_jupyter.model/1"
MANIFEST = "verta_model.json"


class _Missing:
    """Marks an argument that was not given (None is a valid JSON sample)."""

    def __repr__(self):
        return "MISSING"

    def __bool__(self):
        return False


MISSING = _Missing()


def write_package(captured, path: Path, *, sample_input=MISSING, sample_output=MISSING,
                  artifact_keys=()) -> Path:
    """Write `captured` (a CapturedModel) as a package at `path`; return `path`."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise PackageError(f"cannot write a model package to {path}: the folder is not empty. "
                           "Choose a new folder.")
    with staged_directory(path) as staging:
        _write_files(captured, staging, sample_input, sample_output)
        known = _place_values(getattr(captured, "pickled", None) or {}, staging)
        manifest = _manifest(captured, staging, artifact_keys, known)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


@contextmanager
def staged_directory(path: Path):
    """Yield a staging folder beside `path` (absent or empty) that becomes `path` in one rename
    when the block succeeds, and is removed when it fails: no reader sees half a directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.staging-", dir=path.parent))
    try:
        yield staging
        if path.exists():
            path.rmdir()
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_files(captured, root: Path, sample_input, sample_output) -> None:
    (root / "model.py").write_text(captured.source)
    (root / "requirements.txt").write_text("".join(f"{r}\n" for r in captured.requirements))
    if captured.class_pickle is not None:
        (root / "class.pkl").write_bytes(captured.class_pickle)
    for relative, data in captured.bundled.items():
        target = root / "lib" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if sample_input is not MISSING:
        (root / "input_example.json").write_text(json.dumps(sample_input, allow_nan=False, indent=2))
    if sample_output is not MISSING:
        (root / "output_example.json").write_text(json.dumps(sample_output, allow_nan=False, indent=2))


def value_files(names) -> dict[str, tuple[str, str]]:
    """Each pickled value's files in a package, by its position in model.py's order."""
    return {name: (f"values/{k}.pkl", f"values/{k}.buf") for k, name in enumerate(names)}


def _place_values(stored: dict, root: Path) -> dict[str, str]:
    """Put each value's files (written and hashed at capture) in the package: linked when the
    package is a temporary one of this process, copied otherwise. Returns their digests."""
    known: dict[str, str] = {}
    if stored:
        (root / "values").mkdir()
    for name, (stream, buffers) in value_files(stored).items():
        value = stored[name]
        valuefiles.place(value.stream, root / stream, value.stream_sha256)
        known[stream] = value.stream_sha256
        if value.buffers is not None:
            valuefiles.place(value.buffers, root / buffers, value.buffers_sha256)
            known[buffers] = value.buffers_sha256
    return known


def _manifest(captured, root: Path, artifact_keys, known: dict[str, str]) -> dict:
    import cloudpickle

    from .._version import __version__

    return {
        "format": FORMAT,
        "class_name": captured.class_name,
        "entry": f"model:{captured.class_name}",
        "defined_in": captured.defined_in,
        "python": platform.python_version(),
        "cloudpickle": cloudpickle.__version__,
        "verta_jupyter": __version__,
        "artifact_keys": sorted(artifact_keys),
        "requirements": list(captured.requirements),
        "dependencies": [asdict(d) for d in captured.dependencies],
        "warnings": [{"code": w.code, "message": w.message, "where": w.where} for w in captured.warnings],
        # values pickled with bytecode (notebook code with no source) load under this minor only
        "tied_to_python": _minor() if getattr(captured, "tied", None) else None,
        "tied_values": list(getattr(captured, "tied", None) or []),
        "files": _digests(root, known),
    }


def _minor() -> str:
    return "%d.%d" % sys.version_info[:2]


def _digests(root: Path, known: dict[str, str]) -> dict[str, str]:
    """sha256 of every file; value files were hashed as they were written (`known`)."""
    return {rel: known.get(rel) or _sha256(root / rel) for rel in _package_files(root)}


def _package_files(root: Path) -> list[str]:
    """Every file under `root` but the manifest, refusing what a digest cannot vouch for: a
    symbolic link (its target can change; a linked folder is imported but os.walk skips it) or
    anything but a regular file."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames + sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise PackageError(f"{root}: {rel!r} is a symbolic link; a package holds only "
                                   "regular files. Download or capture the package again.")
            if name in filenames and not path.is_file():
                raise PackageError(f"{root}: {rel!r} is not a regular file. Download or "
                                   "capture the package again.")
            if name in filenames and rel != MANIFEST:
                files.append(rel)
    return files


def _sha256(path: Path) -> str:
    return sha256_file(path)[0]


def read_manifest(path) -> dict:
    """The package's manifest; raises PackageError if `path` is not a model package."""
    manifest_path = Path(path) / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise PackageError(f"{path} is not a verta_jupyter model package: {MANIFEST} is missing. "
                           "Point at the folder written by CapturedModel.save() or run.download_model().") from None
    except (OSError, ValueError) as exc:
        raise PackageError(f"cannot read {manifest_path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise PackageError(f"{path}: unsupported package format {found!r} "
                           f"(this verta_jupyter reads {FORMAT}). Upgrade verta_jupyter.")
    return manifest


def verify_package(path) -> dict:
    """Check every file's sha256 against the manifest; return the manifest or raise PackageError."""
    root = Path(path)
    if root.is_symlink():
        raise PackageError(f"{root} is a symbolic link; point at the package folder itself")
    manifest = read_manifest(root)
    expected = manifest.get("files")
    if not isinstance(expected, dict):
        raise PackageError(f"{root}: the manifest lists no files; the package is damaged. "
                           "Download or capture it again.")
    for rel, digest in expected.items():
        try:
            check_relpath(rel)
        except UnsafePath as exc:
            raise PackageError(f"{root}: the manifest lists a file {exc}; refusing the package. "
                               "Download or capture it again.") from None
        if not isinstance(digest, str):
            raise PackageError(f"{root}: the manifest's digest of {rel!r} is not a string")
    actual = set(_package_files(root))
    for rel in sorted(actual - set(expected)):
        if "__pycache__" in rel.split("/"):
            raise PackageError(f"{root}: {rel!r} is compiled code the manifest does not list "
                               "(an import would run it instead of the verified source); remove "
                               "the __pycache__ folder, or download or capture the package again.")
        raise PackageError(f"{root}: unexpected file {rel!r} is not in the manifest; the package was "
                           "modified after it was written. Download or capture it again.")
    for rel, digest in sorted(expected.items()):
        if rel not in actual:
            raise PackageError(f"{root}: {rel!r} is missing. Download or capture the package again.")
        if _sha256(root / rel) != digest:
            raise PackageError(f"{root}: {rel!r} was modified after the package was written (sha256 "
                               "mismatch); refusing to load it. Download or capture the package again.")
    return manifest


def package_digest(manifest: dict) -> str:
    """One sha256 naming the package's content (over the files' digests)."""
    canonical = json.dumps(manifest["files"], sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()
