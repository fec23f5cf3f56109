"""Integrity check for `MlflowStore`: every published artifact is complete on the server."""
from __future__ import annotations


from ..base import CheckResult
from . import artifacts as arts


def check_store(store) -> CheckResult:
    """Read-only: for every run we own, each artifact tag's files exist with the recorded size."""
    result = CheckResult(counts={"runs": 0, "artifacts": 0})
    exp_ids = [e["experiment_id"] for kind in ("experiment", "registry") for e in store._experiments(kind)]
    for run in store._search_runs(exp_ids):
        result.counts["runs"] += 1
        run_id = run["info"]["run_id"]
        root = arts.artifact_root(run["info"]["artifact_uri"], store.location)
        tags = {t["key"]: t["value"] for t in run.get("data", {}).get("tags", [])}
        for key, text in tags.items():
            if not key.startswith(arts.INFO_TAG):
                continue
            result.counts["artifacts"] += 1
            name = key[len(arts.INFO_TAG):]
            try:
                info, gen = arts.parse_info(store.http, root, name, text)
                base = f"{root}/vj/{name}/{gen}"
                size = _tree_size(store, base)
            except Exception as exc:  # report, never stop: check is a diagnosis
                result.problems.append(f"run {run_id} artifact {name!r}: {exc}")
                continue
            if size != info.size:
                result.problems.append(f"run {run_id} artifact {name!r}: {size} bytes on the "
                                       f"server, {info.size} recorded")
    return result


def _tree_size(store, base: str) -> int:
    total, todo = 0, [base]
    while todo:
        path = todo.pop()
        for entry in store.http.list_artifacts(path):
            child = f"{path}/{entry['path'].rsplit('/', 1)[-1]}"
            if entry.get("is_dir"):
                todo.append(child)
            else:
                total += int(entry.get("file_size") or 0)
    return total
