"""Artifacts of an MLflow run: upload a file or a tree, then make it visible with one tag.

Layout under the run's artifact root (`mlflow-artifacts:/<exp>/<run>/artifacts`):

    vj/<key>/<generation>/<filename>        a file (or pickled object)
    vj/<key>/<generation>/<tree...>         a directory or a model package
    vj/<key>/<generation>.info.json         the info record, when too large for a tag

The run tag `verta_jupyter.artifact.<key>` holds the info record (type, filename, size, digest,
meta, generation). It is written last: until then no reader sees the new files, so a server
that stops mid-upload leaves the previous artifact (or none) — never a half-visible one.
Each upload goes to a fresh generation folder, so it never overwrites files a reader may be
fetching; the previous generation is deleted (best effort) once the tag points away from it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Mapping

from ....errors import NotFoundError, StoreError
from ....package.format import read_manifest
from ....package.mlflow_export import ModelIdentity, mlflow_files
from ....package.paths import UnsafePath, check_relpath, safe_target
from ..base import ARTIFACT_TYPES, ArtifactInfo, Progress, hash_file, iter_tree, tree_digest
from .fields import PREFIX
from .rest import MlflowHttp

INFO_TAG = PREFIX + "artifact."
MAX_TAG_VALUE = 7500  # MLflow's tag value limit is 8000 characters; keep a margin
#: Bounds on a directory listing we walk: far beyond any package, small enough that a server
#: listing a folder inside itself for ever is stopped in seconds.
MAX_TREE_FILES, MAX_TREE_DEPTH = 100_000, 64
_GEN = re.compile(r"[0-9a-f]{1,64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def artifact_root(artifact_uri: str, server: str) -> str:
    """`mlflow-artifacts:/1/abc/artifacts` -> `1/abc/artifacts` (the proxied endpoint's path)."""
    if not artifact_uri.startswith("mlflow-artifacts:"):
        raise StoreError(
            f"MLflow server {server} stores this run's artifacts at {artifact_uri!r}, which we "
            "cannot reach through the server. Start the server with artifact proxying "
            "(the default; e.g. `mlflow server --artifacts-destination DIR`).")
    rest = artifact_uri[len("mlflow-artifacts:"):]
    if rest.startswith("//"):  # mlflow-artifacts://host:port/path
        rest = rest[2:].split("/", 1)[1] if "/" in rest[2:] else ""
    return checked(rest.strip("/"), f"MLflow server {server} (a run's artifact_uri)")


def checked(rel: object, where: str) -> str:
    """`rel` if it is a safe relative path (`package.paths.check_relpath`), else a StoreError
    naming `where` (the server and the call) and the entry. Nothing has been written yet."""
    try:
        return check_relpath(rel)
    except UnsafePath as exc:
        raise unsafe(where, exc) from None


def unsafe(where: str, exc: UnsafePath) -> StoreError:
    return StoreError(f"{where} sends an unsafe path: {exc}. Refused before writing it (nothing "
                      "was written). The server's data may be damaged or hostile: check the "
                      "store (`store check`) and log the artifact again from a trusted copy.")


def upload(http: MlflowHttp, root: str, key: str, path: Path, *, type: str,
           meta: Mapping[str, Any] | None, progress: Progress | None) -> tuple[ArtifactInfo, dict]:
    """Upload every byte; return the info and the tag value that will publish it (not set yet)."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"no file or directory at {path}; check the path")
    gen = uuid.uuid4().hex[:12]
    base = f"{root}/vj/{key}/{gen}"
    report = _reporter(progress)
    if path.is_dir():
        files = list(iter_tree(path))
        sent = parallel(lambda item: http.upload(item[1], f"{base}/{item[0]}", progress=report()),
                        files)
        entries = [(rel, digest, size) for (rel, _), (digest, size) in zip(files, sent)]
        digest, size = tree_digest(entries), sum(e[2] for e in entries)
    else:
        digest, size = http.upload(path, f"{base}/{path.name}", progress=report())
    info = ArtifactInfo(key=key, type=type, filename=path.name, size=size, digest=digest,
                        meta=dict(meta or {}))
    record = {"gen": gen, "type": type, "filename": path.name, "size": size, "digest": digest,
              "meta": info.meta}
    text = json.dumps(record, sort_keys=True)
    if len(text) > MAX_TAG_VALUE:  # a big manifest: keep it in a file, point at it
        with tempfile.TemporaryDirectory() as tmp:
            side = Path(tmp) / "info.json"
            side.write_text(text)
            http.upload(side, f"{base}.info.json")
        text = json.dumps({**record, "meta": None, "info_file": True}, sort_keys=True)
    return info, {"key": INFO_TAG + key, "value": text}


def _reporter(progress: Progress | None):
    """Adapt the REST layer's (done, total) callback to the protocol's (bytes just moved)."""
    def make():
        if progress is None:
            return None
        last = [0]

        def report(done: int, total: int) -> None:
            if done < last[0]:  # a retried attempt starts over
                last[0] = 0
            progress(done - last[0])
            last[0] = done
        return report
    return make


def parse_info(http: MlflowHttp, root: str, key: str, text: str) -> tuple[ArtifactInfo, str]:
    """The published info record of artifact `key` (from its tag, or its side file), checked:
    a record changed on the server becomes a StoreError naming the key, not a KeyError."""
    record = read_record(http, key, text)
    model_id = record.get("mlflow_model_id")  # in the tag itself (logged.py, via the store)
    if record.get("info_file"):
        with tempfile.TemporaryDirectory() as tmp:
            side = Path(tmp) / "info.json"
            http.download(f"{root}/vj/{key}/{record['gen']}.info.json", side)
            record = read_record(http, key, side.read_text(errors="replace"), side_file=True)
    meta = dict(record["meta"] or {})
    if isinstance(model_id, str) and model_id:
        meta["mlflow_model_id"] = model_id
    info = ArtifactInfo(key=key, type=record["type"], filename=record["filename"],
                        size=record["size"], digest=record["digest"], meta=meta)
    return info, record["gen"]


def read_record(http: MlflowHttp, key: str, text: str, side_file: bool = False) -> dict:
    """An artifact's info record from JSON text, every field checked."""
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        record = None
    where = f"the info record of artifact {key!r}"
    if not isinstance(record, dict):
        raise _bad_record(http, where, "a JSON object")
    checks = {"gen": lambda v: isinstance(v, str) and _GEN.fullmatch(v)}
    if not record.get("info_file") or side_file:
        checks.update({
            "type": lambda v: v in ARTIFACT_TYPES,
            "filename": lambda v: isinstance(v, str) and "/" not in v and _relpath_ok(v),
            "size": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            "digest": lambda v: isinstance(v, str) and _DIGEST.fullmatch(v),
            "meta": lambda v: v is None or isinstance(v, dict)})
    for name, ok in checks.items():
        if not ok(record.get(name)):
            raise _bad_record(http, where, f'a valid "{name}", got {record.get(name)!r:.80}')
    return record


def generation_of(text: str) -> str | None:
    """The generation a published tag points at, or None if the tag is unreadable."""
    try:
        gen = json.loads(text).get("gen")
    except (ValueError, AttributeError, RecursionError):
        return None
    return gen if isinstance(gen, str) and _GEN.fullmatch(gen) else None


def _relpath_ok(text: str) -> bool:
    try:
        check_relpath(text)
    except UnsafePath:
        return False
    return True


def _bad_record(http: MlflowHttp, where: str, expected: str) -> StoreError:
    return StoreError(f"MLflow server {http.url}: {where} is damaged (expected {expected}); it "
                      "was changed outside verta_jupyter. Log the artifact again (overwrite=True).")


def fetch(http: MlflowHttp, root: str, info: ArtifactInfo, gen: str, dest: Path,
          progress: Progress | None) -> Path:
    """Download into a temp sibling of `dest`, verify the digest, then rename into place.

    For a tree, the whole listing is read and every entry checked (`list_tree`) before the
    first byte is written, and each file lands under the temp folder or nowhere."""
    dest = Path(dest)
    if dest.exists():
        raise StoreError(f"{dest} already exists; fetch into a new path")
    base = f"{root}/vj/{info.key}/{gen}"
    tree = list_tree(http, base) if info.type in ("directory", "model") else None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".vj-fetch-", dir=dest.parent))
    report = _reporter(progress)
    try:
        if tree is not None:
            top = tmp / "d"
            top.mkdir()
            entries = []
            for rel, _ in tree:
                try:  # checked again at the write: no link or file on the way, no duplicate
                    target = safe_target(top, rel)
                except UnsafePath as exc:
                    raise unsafe(f"MLflow server {http.url} (listing {base})", exc) from None
                http.download(f"{base}/{rel}", target, progress=report())
                entries.append((rel, *hash_file(target)))
            digest = tree_digest(entries)
        else:
            http.download(f"{base}/{info.filename}", tmp / "d", progress=report())
            digest = hash_file(tmp / "d")[0]
        if digest != info.digest:
            raise StoreError(f"artifact {info.key!r} from {http.url} does not match its digest "
                             f"({digest} != {info.digest}); it was changed on the server. "
                             "Log it again.")
        os.replace(tmp / "d", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def list_tree(http: MlflowHttp, base: str) -> list[tuple[str, int]]:
    """(relative path, size) of every file under `base`, sorted (as `iter_tree` orders them).

    The server's listing is untrusted: each entry must be a safe relative path (`checked`:
    no `..`, absolute, drive or backslash path), each name is listed once, and the walk stops
    at MAX_TREE_FILES entries or MAX_TREE_DEPTH levels, so a hostile listing can neither steer
    a write outside the destination nor keep us listing for ever."""
    where = f"MLflow server {http.url} (listing {base})"
    out, todo, seen = [], [("", 0)], set()
    while todo:
        rel, depth = todo.pop()
        for entry in http.list_artifacts(f"{base}/{rel}".rstrip("/")):
            name = checked(entry["path"], where).rsplit("/", 1)[-1]
            child = f"{rel}/{name}".lstrip("/")
            if child in seen:
                raise http.malformed(f"list {base}", f"each entry once, got {child!r} twice")
            seen.add(child)
            if len(seen) > MAX_TREE_FILES or depth >= MAX_TREE_DEPTH:
                raise http.malformed(f"list {base}", f"at most {MAX_TREE_FILES} entries "
                                                     f"{MAX_TREE_DEPTH} levels deep")
            if entry.get("is_dir") is True:
                todo.append((child, depth + 1))
            else:
                size = entry.get("file_size") or 0
                size = int(size) if str(size).isdigit() else -1  # -1: never equals a record
                out.append((child, size))
    return sorted(out)


def write_mlflow_model(http: MlflowHttp, root: str, package: Path, package_gen: str, key: str,
                       tags: Mapping[str, str], identity: ModelIdentity | None = None) -> bool:
    """Make the run's artifact root an MLflow model (MLmodel + entry) that loads this package
    and the run's artifacts in place, so `mlflow.pyfunc.load_model("runs:/<id>")` and
    `models:/<name>/<version>` work with MLflow's own tools. Written after the package's bytes
    and before the tag that publishes it. False if an artifact the model needs is missing."""
    placed = {}
    for name in read_manifest(package).get("artifact_keys", []):
        text = tags.get(INFO_TAG + name)
        if text is None:
            return False
        record = read_record(http, name, text)
        tail = "" if record["type"] == "directory" else f"/{record['filename']}"
        placed[name] = f"vj/{name}/{record['gen']}{tail}"
    files = mlflow_files(package, f"vj/{key}/{package_gen}", placed, identity)
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
        rest = [name for name in files if name != "MLmodel"]
        parallel(lambda name: http.upload(Path(tmp) / name, f"{root}/{name}"), rest)
        http.upload(Path(tmp) / "MLmodel", f"{root}/MLmodel")  # last: it makes it a model
    return True


def parallel(fn, items: list, workers: int = 4) -> list:
    """`[fn(item) for item in items]` with a few requests in flight: a package is many small
    files, and each PUT waits mostly on the server. The first error is raised."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def refresh_mlflow_model(http: MlflowHttp, root: str, key: str, tags: Mapping[str, str],
                         identity: ModelIdentity | None = None) -> None:
    """Rewrite the MLflow files of a model on this run that uses artifact `key` (it was logged
    after the model, e.g. when a registry version copies a run's artifacts, or replaced)."""
    for tag, text in tags.items():
        if not tag.startswith(INFO_TAG):
            continue
        model_key = tag[len(INFO_TAG):]
        record = read_record(http, model_key, text)
        if record.get("type") != "model":
            continue
        base = f"{root}/vj/{model_key}/{record['gen']}"
        with tempfile.TemporaryDirectory() as tmp:
            http.download(f"{base}/verta_model.json", Path(tmp) / "verta_model.json")
            try:
                uses = json.loads((Path(tmp) / "verta_model.json").read_text()).get("artifact_keys")
            except (ValueError, AttributeError, RecursionError):
                continue  # a damaged package: loading it will say so (its digests are checked)
            if not isinstance(uses, list) or key not in uses:
                continue
            try:
                http.download(f"{base}/input_example.json", Path(tmp) / "input_example.json")
            except NotFoundError:
                pass
            write_mlflow_model(http, root, Path(tmp), record["gen"], model_key, tags, identity)


def delete_generation(http: MlflowHttp, root: str, key: str, gen: str) -> None:
    """Best effort: the old generation is garbage once the tag points elsewhere."""
    try:
        http.request("DELETE", http.artifact_url(f"{root}/vj/{key}/{gen}"), retry=False,
                     what=f"delete old {key}").close()
    except StoreError:
        pass  # harmless: unreferenced files; `check()` reports them as notes
