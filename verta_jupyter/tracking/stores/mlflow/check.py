"""Integrity check for `MlflowStore`: every published artifact is complete on the server."""
from __future__ import annotations

from ....errors import StoreError
from ..base import CheckResult
from . import artifacts as arts
from .names import _run_data
from .server import TrackingServer


def check_store(server: TrackingServer) -> CheckResult:
    """Read-only: for every run we own, each artifact tag's files exist with the recorded size."""
    result = CheckResult(counts={"runs": 0, "artifacts": 0})
    exp_ids = [e["experiment_id"] for kind in ("experiment", "registry")
               for e in server.experiments(kind)]
    for run in server.search_runs(exp_ids):
        result.counts["runs"] += 1
        run_id = run["info"]["run_id"]
        for key, text in _run_data(run)["tags"].items():
            if not key.startswith(arts.INFO_TAG):
                continue
            result.counts["artifacts"] += 1
            name = key[len(arts.INFO_TAG):]
            try:
                root = arts.artifact_root(run["info"]["artifact_uri"], server.location)
                info, gen = arts.parse_info(server.http, root, name, text)
                size = sum(size for _, size in arts.list_tree(server.http, f"{root}/vj/{name}/{gen}"))
            except StoreError as exc:  # report, never stop: check is a diagnosis
                result.problems.append(f"run {run_id} artifact {name!r}: {exc}")
                continue
            if size != info.size:
                result.problems.append(f"run {run_id} artifact {name!r}: {size} bytes on the "
                                       f"server, {info.size} recorded")
    return result
