"""The `Store` protocol: the small surface every store (local SQLite, MLflow REST) implements.

The tracking layer (`Client`, `ExperimentRun`, `RegisteredModel`) owns Verta's semantics — key
rules, "re-logging a key raises unless overwrite=True", pickling objects, building models. A
store only keeps entities, key-value fields and files, so that it maps onto MLflow's model:

==================  ===========================  =========================================
verta_jupyter        Store                         MLflow (suggested mapping)
==================  ===========================  =========================================
Project              kind "project"                experiment tag / name prefix
Experiment           kind "experiment"             experiment
ExperimentRun        kind "run"                    run
hyperparameters      field "hyperparameters"       params (JSON-encoded values)
metrics              field "metrics"               metrics
attributes           field "attributes"            tags (JSON-encoded values)
tags (plain labels)  field "tags" (value None)     tags
log_artifact         put_artifact(path)            run artifacts (file, or directory tree)
log_model            put_artifact(MODEL_KEY, dir)  run artifacts under MODEL_KEY/
RegisteredModel      kind "registered_model"       registered model
model version        kind "model_version"          model version (+ its own artifacts)
==================  ===========================  =========================================

Identifiers are opaque strings chosen by the store; they are unique per kind. Names are unique
within their parent (a project name globally, an experiment within its project, a run within
its experiment, a registered model globally, a version within its registered model).

Every method raises `NotFoundError` for an unknown id or key and `StoreError` for anything the
store refuses or fails to do. A method that raises leaves the store as it was.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Protocol, runtime_checkable

from ..._digest import sha256_file

#: Entity kinds, parent first. `parent_id` of each is an id of the kind before it
#: ("project" and "registered_model" have no parent; a model version's parent is its
#: registered model).
KINDS = ("project", "experiment", "run", "registered_model", "model_version")
PARENT_KIND = {"project": None, "experiment": "project", "run": "experiment",
               "registered_model": None, "model_version": "registered_model"}

#: Key-value fields a run or a model version carries. Values are JSON-compatible Python
#: values (str, int, float incl. NaN/inf for metrics, bool, None, lists and dicts for
#: attributes); a store returns them with the same Python types it was given.
FIELDS = ("hyperparameters", "metrics", "attributes", "tags")

#: Kinds that carry fields and artifacts.
OWNER_KINDS = ("run", "model_version")


def check_kind(kind: str) -> None:
    """Refuse an entity kind the protocol does not know (a programming error, said plainly)."""
    if kind not in KINDS:
        from ...errors import StoreError

        raise StoreError(f"unknown entity kind {kind!r}; use one of {KINDS}")


def check_field(field: str) -> None:
    """Refuse a field name the protocol does not know."""
    if field not in FIELDS:
        from ...errors import StoreError

        raise StoreError(f"unknown field {field!r}; use one of {FIELDS}")

#: Artifact key under which a model package directory is stored. User artifact keys must
#: start with a letter or digit, so this key can never collide with one.
MODEL_KEY = "_verta_model"
#: Artifact key for `log_requirements` (Verta's reserved name).
REQUIREMENTS_KEY = "requirements.txt"

#: Artifact types: how the tracking layer hands the bytes back. "file" is returned as the
#: file, "directory" as a directory, "object" is a pickle the tracking layer unpickles,
#: "model" is a model package directory. A store may also publish a "model" in its own
#: native model format (MLflow: an MLmodel at the run's artifact root), before the model
#: becomes visible, and keep that export pointing at the current bytes of the artifacts the
#: package's manifest names ("artifact_keys") when one of them is replaced.
ARTIFACT_TYPES = ("file", "directory", "object", "model")

#: Called with the number of bytes just transferred (for progress bars).
Progress = Callable[[int], None]


class Entity(NamedTuple):
    """A project, experiment, run, registered model or model version as the store sees it.
    (A NamedTuple, not a dataclass: listing 10,000 runs builds 10,000 of these.)"""

    kind: str
    id: str
    name: str
    parent_id: str | None = None
    created_at: float = 0.0  # seconds since the epoch


@dataclass(frozen=True)
class ArtifactInfo:
    """What a store knows about one stored artifact (without fetching its bytes).

    `digest` is "sha256:<hex>" of the file, or of the directory's tree listing (sorted
    "relpath\\tsha256\\tsize" lines). `size` is the total byte count. `filename` is the base
    name of the logged path, so a fetched file keeps its name and extension. `meta` is
    small JSON the tracking layer attaches (for a model: the package manifest).
    """

    key: str
    type: str
    filename: str
    size: int
    digest: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class CheckResult:
    """The outcome of `Store.check()`: `problems` means damage; `notes` is harmless garbage
    (e.g. blobs or temporary files left by an interrupted write, never referenced)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


@runtime_checkable
class Store(Protocol):
    """Entities, fields and files. See the module docstring for the rules every method keeps."""

    #: Where the store lives ("/abs/path/verta_store" or "http://host:5000"), for messages.
    location: str

    # -- entities ---------------------------------------------------------------------------
    def get_or_create(self, kind: str, name: str | None, parent_id: str | None = None) -> Entity:
        """The entity named `name` under `parent_id`, created if absent (safe under races
        between processes: both callers get the same entity). `name=None` always creates a
        new entity with a store-chosen name (model versions: "1", "2", ... in order)."""

    def get(self, kind: str, id: str) -> Entity:
        """The entity with this id; NotFoundError if there is none."""

    def find(self, kind: str, *, parent_id: str | None = None, ancestor_id: str | None = None,
             name: str | None = None, tag: str | None = None) -> list[Entity]:
        """Entities of `kind` matching every given filter, oldest first. `ancestor_id` is a
        grandparent (runs of a project); `tag` keeps owners whose "tags" field has that key."""

    # -- key-value fields -------------------------------------------------------------------
    def put_fields(self, kind: str, id: str, field: str, values: Mapping[str, Any],
                   overwrite: bool = True) -> None:
        """Set keys of one field, replacing existing values, all or nothing. With
        `overwrite=False` no key may be logged yet: AlreadyExistsError otherwise and nothing is
        written, checked atomically with the write, so of racing writers of a key exactly one
        succeeds (the tracking layer also checks first, for an early, friendlier error)."""

    def get_fields(self, kind: str, id: str, field: str) -> dict[str, Any]:
        """All keys of one field (empty dict if none)."""

    # -- artifacts (files and directories, streamed) ----------------------------------------
    def put_artifact(self, kind: str, id: str, key: str, path: Path, *, type: str,
                     meta: Mapping[str, Any] | None = None,
                     progress: Progress | None = None, overwrite: bool = True) -> ArtifactInfo:
        """Store the file or directory at `path` under `key`, streaming it (never whole in
        memory). It becomes visible in one step after all bytes are safely stored, replacing
        any previous artifact with that key; a crash before that step leaves the old state.
        With `overwrite=False` an existing key raises AlreadyExistsError and nothing is
        replaced; a store that can, checks this atomically with the record."""

    def artifact_info(self, kind: str, id: str, key: str) -> ArtifactInfo:
        """Metadata of one artifact; NotFoundError if the key was never stored."""

    def list_artifacts(self, kind: str, id: str) -> list[ArtifactInfo]:
        """Every artifact of an owner (including MODEL_KEY and REQUIREMENTS_KEY if stored)."""

    def fetch_artifact(self, kind: str, id: str, key: str, dest: Path, *,
                       progress: Progress | None = None) -> Path:
        """Write the artifact to `dest` (a path that must not exist yet: the file itself, or
        the directory for a directory artifact), verifying its digest; return `dest`. On any
        failure nothing is left at `dest`."""

    def copy_artifacts(self, src_kind: str, src_id: str, dst_kind: str, dst_id: str,
                       extra_meta: Mapping[str, Any] | None = None) -> None:
        """Give owner `dst` every artifact of owner `src` (both in this store), each with
        `extra_meta` added to its meta (a registered version copies its run this way)."""

    # -- maintenance ------------------------------------------------------------------------
    def check(self, verify_blobs: bool = True) -> CheckResult:
        """Verify integrity: every referenced file present (with the right digest when
        `verify_blobs` and the store can read its bytes cheaply), no half-written entity.
        Read-only; reports damage, never raises for it."""

    def collect_garbage(self, min_age: float = 3600.0) -> dict[str, int]:
        """Remove what interrupted writes left behind, older than `min_age` seconds; return
        {"temp_files": n, "blobs": n, "bytes": n}. Refuses (StoreError) on a store that fails `check`, and
        where the backend manages its own storage (say so, and what to use instead)."""

    def close(self) -> None:
        """Release connections and sessions (the store can be reopened)."""


def transfer_artifacts(source: Store, src_kind: str, src_id: str, target: Store, dst_kind: str,
                       dst_id: str, extra_meta: Mapping[str, Any] | None = None) -> None:
    """Copy every artifact of an owner in `source` to an owner in `target` through a local
    temporary folder, one artifact at a time (the stores may differ: any two stores work)."""
    import tempfile

    for info in source.list_artifacts(src_kind, src_id):
        with tempfile.TemporaryDirectory(prefix="vj-copy-") as tmp:
            path = source.fetch_artifact(src_kind, src_id, info.key,
                                         Path(tmp) / (Path(info.filename).name or "a"))
            target.put_artifact(dst_kind, dst_id, info.key, path, type=info.type,
                                meta={**info.meta, **(extra_meta or {})})


def iter_tree(root: Path) -> Iterable[tuple[str, Path]]:
    """Files under a directory as ("posix/relative/path", absolute path), sorted, so every
    store hashes and lists a directory tree the same way. A symlinked file counts as the file
    it points to; a symlinked directory or a dangling link is refused (StoreError) rather than
    silently dropped: a loop would never end, and a missing file would be a silent loss."""
    from ...errors import StoreError

    for path in sorted(root.rglob("*")):
        if path.is_symlink() and (path.is_dir() or not path.exists()):
            what = "a link to a directory" if path.exists() else "a dangling link"
            raise StoreError(f"{path} is {what}; copy its target into {root.name} (or remove it) "
                             "before logging the directory")
        if path.is_file():
            yield path.relative_to(root).as_posix(), path


def tree_digest(entries: Iterable[tuple[str, str, int]]) -> str:
    """The digest of a directory artifact from its (relpath, "sha256:<hex>", size) entries."""
    h = hashlib.sha256()
    for rel, digest, size in sorted(entries):
        h.update(f"{rel}\t{digest}\t{size}\n".encode())
    return "sha256:" + h.hexdigest()


def hash_file(path: Path, progress: Progress | None = None) -> tuple[str, int]:
    """("sha256:<hex>", size) of a file, read in chunks."""
    hexdigest, size = sha256_file(path, progress)
    return "sha256:" + hexdigest, size
