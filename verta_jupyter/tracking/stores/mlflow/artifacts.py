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
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Mapping

from ....errors import NotFoundError, StoreError
from ..base import ArtifactInfo, Progress, hash_file, iter_tree, tree_digest
from .fields import PREFIX
from .rest import MlflowHttp

INFO_TAG = PREFIX + "artifact."
MAX_TAG_VALUE = 7500  # MLflow's tag value limit is 8000 characters; keep a margin


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
    return rest.strip("/")


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
    record = json.loads(text)
    if record.get("info_file"):
        with tempfile.TemporaryDirectory() as tmp:
            side = Path(tmp) / "info.json"
            http.download(f"{root}/vj/{key}/{record['gen']}.info.json", side)
            record = json.loads(side.read_text())
    info = ArtifactInfo(key=key, type=record["type"], filename=record["filename"],
                        size=record["size"], digest=record["digest"], meta=record["meta"] or {})
    return info, record["gen"]


def fetch(http: MlflowHttp, root: str, info: ArtifactInfo, gen: str, dest: Path,
          progress: Progress | None) -> Path:
    """Download into a temp sibling of `dest`, verify the digest, then rename into place."""
    dest = Path(dest)
    if dest.exists():
        raise StoreError(f"{dest} already exists; fetch into a new path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    base = f"{root}/vj/{info.key}/{gen}"
    tmp = Path(tempfile.mkdtemp(prefix=".vj-fetch-", dir=dest.parent))
    report = _reporter(progress)
    try:
        if info.type in ("directory", "model"):
            entries = []
            for rel in list_tree(http, base):
                target = tmp / "d" / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                http.download(f"{base}/{rel}", target, progress=report())
                entries.append((rel, *hash_file(target)))
            (tmp / "d").mkdir(exist_ok=True)
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


def list_tree(http: MlflowHttp, base: str) -> list[str]:
    """Relative paths of every file under `base`, sorted (as `iter_tree` orders them)."""
    out, todo = [], [""]
    while todo:
        rel = todo.pop()
        for entry in http.list_artifacts(f"{base}/{rel}".rstrip("/")):
            child = f"{rel}/{entry['path'].rsplit('/', 1)[-1]}".lstrip("/")
            (todo if entry.get("is_dir") else out).append(child)
    return sorted(out)


def write_mlflow_model(http: MlflowHttp, root: str, package: Path, package_gen: str, key: str,
                       tags: Mapping[str, str]) -> bool:
    """Make the run's artifact root an MLflow model (MLmodel + entry) that loads this package
    and the run's artifacts in place, so `mlflow.pyfunc.load_model("runs:/<id>")` and
    `models:/<name>/<version>` work with MLflow's own tools. Written after the package's bytes
    and before the tag that publishes it. False if an artifact the model needs is missing."""
    from ....package.mlflow_export import mlflow_files
    from ....package.format import read_manifest

    placed = {}
    for name in read_manifest(package).get("artifact_keys", []):
        text = tags.get(INFO_TAG + name)
        if text is None:
            return False
        record = json.loads(text)
        tail = "" if record["type"] == "directory" else f"/{record['filename']}"
        placed[name] = f"vj/{name}/{record['gen']}{tail}"
    files = mlflow_files(package, f"vj/{key}/{package_gen}", placed)
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


def refresh_mlflow_model(http: MlflowHttp, root: str, key: str, tags: Mapping[str, str]) -> None:
    """Rewrite the MLflow files of a model on this run that uses artifact `key` (it was logged
    after the model, e.g. when a registry version copies a run's artifacts, or replaced)."""
    for tag, text in tags.items():
        record = json.loads(text) if tag.startswith(INFO_TAG) else {}
        if record.get("type") != "model":
            continue
        model_key = tag[len(INFO_TAG):]
        base = f"{root}/vj/{model_key}/{record['gen']}"
        with tempfile.TemporaryDirectory() as tmp:
            http.download(f"{base}/verta_model.json", Path(tmp) / "verta_model.json")
            if key not in json.loads((Path(tmp) / "verta_model.json").read_text()).get("artifact_keys", []):
                continue
            try:
                http.download(f"{base}/input_example.json", Path(tmp) / "input_example.json")
            except NotFoundError:
                pass
            write_mlflow_model(http, root, Path(tmp), record["gen"], model_key, tags)


def delete_generation(http: MlflowHttp, root: str, key: str, gen: str) -> None:
    """Best effort: the old generation is garbage once the tag points elsewhere."""
    try:
        http.request("DELETE", http.artifact_url(f"{root}/vj/{key}/{gen}"), retry=False,
                     what=f"delete old {key}")
    except StoreError:
        pass  # harmless: unreferenced files; `check()` reports them as notes
